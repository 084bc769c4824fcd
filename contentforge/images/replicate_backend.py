"""Hosted generation on Replicate through its official ``replicate`` client (Flux 1.1 Pro by default).

One image is one prediction (https://replicate.com/docs/reference/http):

1. ``client.models.predictions.create(model="owner/name", input=..., wait=N)`` posts to
   ``/v1/models/{owner}/{name}/predictions`` with ``Prefer: wait=N``: the server holds the request up to
   N seconds and answers with the prediction, finished or not.
2. Until it is ``succeeded``, ``failed`` or ``canceled``, ``prediction.reload()`` polls
   ``GET /v1/predictions/{id}`` every ``poll_s``, all within ``timeout_s`` from the first request; at
   the deadline the prediction is cancelled (no paying for an image nobody waits for) and the piece fails.
3. ``succeeded``: the output URL is downloaded (size limit, no local addresses) by a separate httpx
   client that carries no token, and decoded like a local generation; ``failed``/``canceled``:
   ``GenerationFailed`` with the first line of the model's error.

Retries. The client wraps its transport in ``replicate.client.RetryTransport``, whose
``RETRYABLE_METHODS`` are HEAD, GET, PUT, DELETE, OPTIONS and TRACE: polls are retried on 429/503/504
(``Retry-After`` honoured, uncapped, up to 10 attempts), **POST never is**, and the ``ReplicateError``
it raises keeps no headers. So prediction creation is retried here: a response hook turns a 429 on a
POST into ``_RateLimited`` with its ``Retry-After``; tenacity (the same wait strategy as the text
providers', ``contentforge.retry_after.wait_retry_after``) waits that long (plus up to ``backoff_s``
of jitter so concurrent slots do not retry in lockstep), or ``backoff_s * 2**n`` with jitter when there
is none, at most ``MAX_RATE_LIMIT_RETRIES`` times and never past the deadline. A 429 created nothing, so
retrying it is safe; a 5xx, timeout or broken connection on the POST is not retried here (the prediction
may exist and would be paid twice): the piece fails and the task's retry policy decides.

Models take different inputs (``MODEL_INPUTS``): Flux 1.1 Pro takes no step count, guidance or LoRA;
``black-forest-labs/flux-dev-lora`` and ``flux-schnell-lora`` take one LoRA as ``lora_weights`` (hub id or
URL) and ``lora_scale``. A request with several LoRAs, a local LoRA file, or a LoRA for a model that takes
none raises ``InvalidLora`` before any request, so that piece fails and is not retried. The seed goes in
the input, so Flux models reproduce an image.

The API token is a ``SecretStr`` until the client is built; it travels only in the ``Authorization``
header to the API host, and messages name the setting, never the value.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import replicate
from PIL import Image
from pydantic import SecretStr
from replicate.exceptions import ReplicateError
from replicate.prediction import Prediction
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from contentforge.config import Settings
from contentforge.domain import LoraRef
from contentforge.errors import GenerationFailed, InvalidInput, InvalidLora
from contentforge.images.protocol import GeneratedImage, ImageRequest
from contentforge.images.safety import looks_local
from contentforge.images.timings import timing_extra
from contentforge.outbound import OutboundPolicy
from contentforge.redaction import redact_exception, redact_text
from contentforge.research.fetch import is_public_address, resolve_host
from contentforge.retry_after import retry_after_seconds, wait_exponential_equal_jitter, wait_retry_after

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "black-forest-labs/flux-1.1-pro"
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
ASPECT_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
PRO_ASPECT_RATIOS = ("1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3")
MAX_RATE_LIMIT_RETRIES = 5
MAX_POLL_FAILURES = 3
MAX_BACKOFF_S = 30.0
MAX_OUTPUT_BYTES = 50 * 2**20
"""A 1440x1440 PNG is under 10 MB; anything far larger is not an image we asked for."""


@dataclass(frozen=True)
class ModelInputs:
    """The optional inputs a Replicate model takes besides prompt, seed, aspect_ratio and output_format."""

    max_steps: int | None = None
    """``num_inference_steps`` is sent, capped at this; None: the model takes no step count."""
    guidance: bool = False
    lora: bool = False
    """One LoRA as ``lora_weights`` and ``lora_scale``."""
    aspect_ratios: tuple[str, ...] = ASPECT_RATIOS


MODEL_INPUTS: dict[str, ModelInputs] = {
    "black-forest-labs/flux-1.1-pro": ModelInputs(aspect_ratios=PRO_ASPECT_RATIOS),
    "black-forest-labs/flux-schnell": ModelInputs(max_steps=4),
    "black-forest-labs/flux-dev": ModelInputs(max_steps=50, guidance=True),
    "black-forest-labs/flux-dev-lora": ModelInputs(max_steps=50, guidance=True, lora=True),
    "black-forest-labs/flux-schnell-lora": ModelInputs(max_steps=4, lora=True),
}


def model_inputs(model: str) -> ModelInputs:
    """What ``model`` takes: known models from ``MODEL_INPUTS``; any other is assumed to follow Flux dev
    (steps, guidance unless it is a schnell model, a LoRA only if its name says ``lora``)."""
    known = MODEL_INPUTS.get(model)
    if known is not None:
        return known
    schnell = "schnell" in model
    return ModelInputs(max_steps=4 if schnell else 50, guidance=not schnell, lora="lora" in model)


def closest_aspect_ratio(width: int, height: int, ratios: tuple[str, ...] = ASPECT_RATIOS) -> str:
    """The ratio in ``ratios`` closest to width:height (Flux models on Replicate take a ratio, not pixels)."""
    target = width / height
    return min(ratios, key=lambda r: abs(int(r.split(":")[0]) / int(r.split(":")[1]) - target))


class _RateLimited(Exception):
    """A 429 on a POST, with the server's ``Retry-After`` (the client's own error drops the headers)."""

    def __init__(self, retry_after: str | None) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


def _raise_on_rate_limited_post(response: httpx.Response) -> None:
    if response.status_code == 429 and response.request.method == "POST":
        raise _RateLimited(response.headers.get("Retry-After"))


def is_local_host(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a literal non-public IP address (no DNS lookup)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return not is_public_address(host.strip("[]"))


def check_output_url(url: str | httpx.URL, *, allow_local: bool) -> None:
    """Refuse an output URL that would make this process fetch from its own network.

    Replicate serves outputs from public https hosts (replicate.delivery). Another scheme, plain http, or
    a host resolving to a private, loopback or link-local address (cloud metadata at 169.254.169.254) is
    refused, unless ``allow_local``: the API itself is local (a fake or a proxy) and so are its outputs.
    The check runs on every redirect hop; like ``contentforge.research.fetch`` it trusts DNS answers.
    """
    parsed = httpx.URL(str(url))
    if allow_local:
        if parsed.scheme not in ("http", "https"):
            raise GenerationFailed(f"Replicate output URL has scheme {parsed.scheme!r}; refused")
        return
    if parsed.scheme != "https":
        raise GenerationFailed(
            f"Replicate output URL is not https ({parsed.scheme}://{parsed.host}); refused"
        )
    try:
        addresses = resolve_host(parsed.host, parsed.port or 443)
    except (OSError, UnicodeError) as exc:
        raise GenerationFailed(f"Replicate output host {parsed.host} does not resolve") from exc
    if not addresses or not all(is_public_address(a) for a in addresses):
        raise GenerationFailed(f"Replicate output host {parsed.host} is a local address; refused")


class ReplicateBackend:
    """Generates each image as one Replicate prediction; thread-safe (one shared client and transport).

    ``sleep`` does every wait (rate-limit backoff, polls), so tests can see the waits without taking them.
    """

    def __init__(
        self,
        *,
        token: SecretStr,
        model: str = DEFAULT_MODEL,
        base_url: str = "https://api.replicate.com",
        cost_usd: float = 0.04,
        timeout_s: float = 120.0,
        wait_s: int = 60,
        poll_s: float = 1.0,
        backoff_s: float = 1.0,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if model.count("/") != 1 or ":" in model:
            raise InvalidInput(
                f"CONTENTFORGE_REPLICATE_MODEL={model!r}: use owner/name (a model, not a version)"
            )
        if not token.get_secret_value():
            raise InvalidInput("CONTENTFORGE_REPLICATE_API_TOKEN is empty")
        self.name = "replicate"
        self._secrets = [token]
        """Redacted from every error this backend raises or chains (a server may quote the token)."""
        self.model = model
        self.inputs = model_inputs(model)
        self.cost_usd = cost_usd
        self.timeout_s = timeout_s
        self.wait_s = max(1, min(60, wait_s))
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.max_output_bytes = max_output_bytes
        self.base_url = base_url.rstrip("/")
        self._sleep = sleep
        # Ours, so that close() can release the connections: the client builds its httpx client lazily
        # (two threads may each build one; they then share this pool) and has no close() of its own.
        self._transport = transport or httpx.HTTPTransport()
        self._client = replicate.Client(
            api_token=token.get_secret_value(),
            base_url=self.base_url,
            timeout=httpx.Timeout(30.0, connect=10.0),
            transport=self._transport,
            event_hooks={"response": [_raise_on_rate_limited_post]},
        )
        # Outputs live on another host and need no token: a separate client, checked on every hop.
        self._allow_local_outputs = is_local_host(httpx.URL(self.base_url).host)
        self._download = httpx.Client(
            timeout=httpx.Timeout(60.0, connect=10.0),
            follow_redirects=True,
            max_redirects=5,
            transport=transport,
            event_hooks={"request": [self._check_output_request]},
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplicateBackend:
        token = settings.replicate_api_token
        if token is None or not token.get_secret_value():
            raise InvalidInput(
                "CONTENTFORGE_IMAGE_PROFILE=replicate needs CONTENTFORGE_REPLICATE_API_TOKEN "
                "(https://replicate.com/account/api-tokens)"
            )
        policy = OutboundPolicy.for_setting("replicate_base_url", settings)
        policy.check_static(settings.replicate_base_url)
        return cls(
            token=token,
            model=settings.replicate_model,
            base_url=settings.replicate_base_url,
            cost_usd=settings.replicate_cost_usd,
            timeout_s=settings.replicate_timeout_s,
            # API calls and output downloads: resolved once, public only, pinned (contentforge.outbound)
            transport=policy.transport(),
        )

    def describe(self) -> str:
        return (
            f"replicate: {self.model} at {self.base_url} (official client), ${self.cost_usd:g} per image "
            "(CONTENTFORGE_IMAGE_PROFILE=replicate)"
        )

    def build_input(self, request: ImageRequest) -> dict[str, Any]:
        """The prediction input for ``request``; ``InvalidLora`` if its LoRAs cannot run on this model."""
        inputs = self.inputs
        payload: dict[str, Any] = {
            "prompt": request.prompt,
            "seed": request.seed % 2**32,  # Replicate's Flux models take a 32-bit seed
            "aspect_ratio": closest_aspect_ratio(request.width, request.height, inputs.aspect_ratios),
            "output_format": "png",  # lossless: provenance is written into the stored PNG
        }
        if inputs.max_steps is not None:
            payload["num_inference_steps"] = min(request.steps, inputs.max_steps)
        if inputs.guidance:
            payload["guidance"] = request.guidance_scale
        if request.loras and not inputs.lora:
            raise InvalidLora(
                f"{self.model} on Replicate takes no LoRA; set CONTENTFORGE_REPLICATE_MODEL to a LoRA model "
                "such as black-forest-labs/flux-dev-lora, or remove the persona's LoRA"
            )
        if len(request.loras) > 1:
            raise InvalidLora(
                f"{self.model} on Replicate takes one LoRA per prediction, got {len(request.loras)}"
            )
        for spec in request.loras:
            if looks_local(spec.source) and not spec.source.startswith(("http://", "https://")):
                raise InvalidLora(
                    f"LoRA {spec.source} is a local file; Replicate needs a hub id or URL for lora_weights"
                )
            payload["lora_weights"] = spec.source
            payload["lora_scale"] = spec.scale
        return payload

    def generate(self, request: ImageRequest) -> GeneratedImage:
        started = time.perf_counter()
        payload = self.build_input(request)
        deadline = time.monotonic() + self.timeout_s
        prediction = self._create(payload, deadline)
        logger.info(
            "Replicate prediction %s of %s created (seed %d)", prediction.id, self.model, request.seed
        )
        prediction = self._wait(prediction, deadline)
        if prediction.status != "succeeded":
            error = redact_text(str(prediction.error or prediction.status), self._secrets)
            error = error.strip().splitlines()[0][:300]
            raise GenerationFailed(
                f"Replicate prediction {prediction.id} {prediction.status} (seed {request.seed}): {error}"
            )
        output = prediction.output
        url = output[0] if isinstance(output, list) and output else output
        if not isinstance(url, str):
            raise GenerationFailed(f"Replicate prediction {prediction.id} returned no image")
        image = self._fetch_image(url)
        record = request.generation_record(
            backend=self.name,
            model=self.model,
            loras=tuple(
                LoraRef(source=s.source, weight_name=s.weight_name, scale=s.scale) for s in request.loras
            ),
            extra={
                "aspect_ratio": str(payload["aspect_ratio"]),
                "output_size": f"{image.width}x{image.height}",
            },
        )
        predict_time = (prediction.metrics or {}).get("predict_time")
        return GeneratedImage(
            image=image,
            record=record,
            seconds=time.perf_counter() - started,
            cost_usd=self.cost_usd,
            # Replicate reports one server time; load, denoise and decode are not separable from outside.
            # The prediction id and that time belong to this run, not to the image: they go with the
            # timings into the stored record, so the same request still gives an equal ``record``.
            timings=timing_extra(cost_usd=self.cost_usd)
            | {
                "prediction_id": prediction.id,
                "predict_time_s": "" if predict_time is None else str(predict_time),
            },
        )

    # -- prediction lifecycle ----------------------------------------------------------------------

    def _create(self, payload: dict[str, Any], deadline: float) -> Prediction:
        """Create the prediction, retrying 429s ourselves (the client never retries a POST).

        tenacity runs the retries: ``Retry-After`` plus up to ``backoff_s`` of jitter, or exponential
        backoff with jitter when the server names no wait; at most ``MAX_RATE_LIMIT_RETRIES`` retries,
        and none whose wait would pass the deadline (that fails at once instead of sleeping).
        """

        def create() -> Prediction:
            remaining = deadline - time.monotonic()
            try:
                return self._client.models.predictions.create(
                    model=self.model, input=payload, wait=max(1, min(self.wait_s, int(remaining)))
                )
            except _RateLimited:
                raise
            except ReplicateError as exc:
                raise self._api_error(exc) from None
            except httpx.HTTPError as exc:
                raise GenerationFailed(
                    f"Replicate: creating the prediction failed ({type(exc).__name__}); not retried here, "
                    "it may exist"
                ) from redact_exception(exc, self._secrets)

        attempts = stop_after_attempt(MAX_RATE_LIMIT_RETRIES + 1)

        def out_of_attempts_or_time(state: RetryCallState) -> bool:
            return attempts(state) or time.monotonic() + state.upcoming_sleep > deadline

        def give_up(state: RetryCallState) -> Prediction:
            if state.attempt_number > MAX_RATE_LIMIT_RETRIES:
                raise GenerationFailed(
                    f"Replicate rate limit persisted after {MAX_RATE_LIMIT_RETRIES} retries"
                )
            raise GenerationFailed(
                f"Replicate rate limit: waiting {state.upcoming_sleep:.1f}s would pass the "
                f"{self.timeout_s:g}s timeout"
            )

        def log_retry(state: RetryCallState) -> None:
            logger.info(
                "Replicate rate limit on creating a prediction; retrying in %.2fs", state.upcoming_sleep
            )

        retrying = Retrying(
            retry=retry_if_exception_type(_RateLimited),
            wait=wait_retry_after(
                lambda exc: retry_after_seconds(exc.retry_after) if isinstance(exc, _RateLimited) else None,
                wait_exponential_equal_jitter(self.backoff_s, MAX_BACKOFF_S),
                jitter_s=self.backoff_s,
            ),
            stop=out_of_attempts_or_time,
            sleep=self._sleep,
            before_sleep=log_retry,
            retry_error_callback=give_up,
        )
        return retrying(create)

    def _wait(self, prediction: Prediction, deadline: float) -> Prediction:
        """Poll until terminal; transient poll failures (5xx, 429, network) are tolerated a few times."""
        failures = 0
        while prediction.status not in TERMINAL:
            if time.monotonic() >= deadline:
                self._cancel(prediction)
                raise GenerationFailed(
                    f"Replicate prediction {prediction.id} did not finish within "
                    f"{self.timeout_s:g}s (cancelled)"
                )
            self._sleep(max(0.0, min(self.poll_s, deadline - time.monotonic())))
            try:
                prediction.reload()
                failures = 0
            except ReplicateError as exc:
                if exc.status is not None and exc.status < 500 and exc.status != 429:
                    raise self._api_error(exc) from None
                failures += 1
                reason = f"answered {exc.status}"
            except httpx.TransportError as exc:
                failures += 1
                reason = type(exc).__name__
            if failures > MAX_POLL_FAILURES:
                raise GenerationFailed(
                    f"Replicate prediction {prediction.id}: polling failed {failures} times in a row "
                    f"({reason})"
                )
            if failures:
                logger.warning("polling Replicate prediction %s failed (%s); retrying", prediction.id, reason)
        return prediction

    def _cancel(self, prediction: Prediction) -> None:
        try:
            prediction.cancel()
        except (ReplicateError, _RateLimited, httpx.HTTPError) as exc:
            logger.warning("cancelling Replicate prediction %s failed: %s", prediction.id, type(exc).__name__)

    def _api_error(self, exc: ReplicateError) -> Exception:
        """A one-line error for an API refusal: input errors are not worth a retry, others may be."""
        redact_exception(exc, self._secrets)
        detail = redact_text(str(exc.detail or exc.title or "no detail"), self._secrets)
        detail = detail.strip().splitlines()[0][:300]
        if exc.status in (401, 403):
            return InvalidInput("Replicate rejected the API token (check CONTENTFORGE_REPLICATE_API_TOKEN)")
        if exc.status == 404:
            return InvalidInput(f"Replicate has no model {self.model} (or the token cannot see it)")
        if exc.status == 422:
            return InvalidInput(f"Replicate refused the input for {self.model}: {detail}")
        return GenerationFailed(f"Replicate answered {exc.status}: {detail}")

    # -- output ------------------------------------------------------------------------------------

    def _check_output_request(self, request: httpx.Request) -> None:
        check_output_url(request.url, allow_local=self._allow_local_outputs)

    def _fetch_image(self, url: str) -> Image.Image:
        limit = self.max_output_bytes
        data = bytearray()
        try:
            with self._download.stream("GET", url) as response:
                if response.status_code != 200:
                    raise GenerationFailed(
                        f"downloading the Replicate output answered {response.status_code}"
                    )
                if int(response.headers.get("Content-Length") or 0) > limit:
                    raise GenerationFailed(f"the Replicate output is larger than {limit} bytes")
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise GenerationFailed(f"the Replicate output is larger than {limit} bytes")
        except httpx.HTTPError as exc:
            raise GenerationFailed(f"downloading the Replicate output failed: {type(exc).__name__}") from exc
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (OSError, Image.DecompressionBombError) as exc:
            raise GenerationFailed(
                f"the Replicate output is not a readable image: {type(exc).__name__}"
            ) from exc
        return image.convert("RGB")

    def close(self) -> None:
        self._transport.close()
        self._download.close()
