"""Hosted generation on Replicate (Flux by default) through its HTTP prediction API.

Protocol (https://replicate.com/docs/reference/http):

1. ``POST /v1/models/{owner}/{name}/predictions`` with ``{"input": {...}}``, ``Authorization: Bearer``
   and ``Prefer: wait=N``: the server holds the request up to N seconds and answers with the prediction,
   finished or not.
2. While ``status`` is ``starting`` or ``processing``, poll ``GET /v1/predictions/{id}``.
3. ``succeeded``: ``output`` is a file URL (or a list of them) to download; ``failed``/``canceled``:
   ``error`` says why.

A 429 answer (rate limit) is retried after ``Retry-After`` (else exponential backoff with jitter); the
creation POST is safe to retry on 429 because the server did not create anything. The seed goes in
the input, so models that honour it (all Flux models) reproduce an image. The API token is a
``SecretStr``: it is sent in the header only and never appears in logs, errors or records.
"""

from __future__ import annotations

import io
import logging
import random
import time
from typing import Any

import httpx
from PIL import Image

from contentforge.config import Settings
from contentforge.domain import GenerationRecord, LoraRef
from contentforge.errors import GenerationFailed, InvalidInput, InvalidLora
from contentforge.images.protocol import GeneratedImage, ImageRequest
from contentforge.images.safety import looks_local
from contentforge.images.timings import timing_extra

logger = logging.getLogger(__name__)

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
ASPECT_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
MAX_RATE_LIMIT_RETRIES = 5
MAX_SERVER_ERROR_RETRIES = 2


def closest_aspect_ratio(width: int, height: int) -> str:
    """The supported aspect ratio closest to width:height (Flux models take a ratio, not pixels)."""
    target = width / height
    return min(ASPECT_RATIOS, key=lambda r: abs(int(r.split(":")[0]) / int(r.split(":")[1]) - target))


class ReplicateBackend:
    """Generates each image as one Replicate prediction; thread-safe (one shared ``httpx.Client``)."""

    def __init__(
        self,
        *,
        token: str,
        model: str,
        base_url: str = "https://api.replicate.com",
        cost_usd: float = 0.003,
        timeout_s: float = 120.0,
        wait_s: int = 60,
        poll_s: float = 1.0,
        backoff_s: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if model.count("/") != 1:
            raise InvalidInput(f"CONTENTFORGE_REPLICATE_MODEL={model!r}: use owner/name")
        self.name = "replicate"
        self.model = model
        self.cost_usd = cost_usd
        self.timeout_s = timeout_s
        self.wait_s = max(1, min(60, wait_s))
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "contentforge"},
            timeout=httpx.Timeout(self.wait_s + 15.0, connect=10.0),
            transport=transport,
        )
        # Output files live on another host (replicate.delivery) and need no token: a separate client.
        self._download = httpx.Client(timeout=60.0, follow_redirects=True, transport=transport)

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplicateBackend:
        if settings.replicate_api_token is None:
            raise InvalidInput(
                "CONTENTFORGE_IMAGE_PROFILE=replicate needs CONTENTFORGE_REPLICATE_API_TOKEN "
                "(https://replicate.com/account/api-tokens)"
            )
        return cls(
            token=settings.replicate_api_token.get_secret_value(),
            model=settings.replicate_model,
            base_url=settings.replicate_base_url,
            cost_usd=settings.replicate_cost_usd,
            timeout_s=settings.replicate_timeout_s,
        )

    def describe(self) -> str:
        return (
            f"replicate: {self.model} at {self.base_url}, ${self.cost_usd:g} per image "
            "(CONTENTFORGE_IMAGE_PROFILE=replicate)"
        )

    def build_input(self, request: ImageRequest) -> dict[str, Any]:
        """The prediction input for ``request`` (Flux schema: prompt, seed, aspect ratio, steps, LoRA)."""
        payload: dict[str, Any] = {
            "prompt": request.prompt,
            "seed": request.seed % 2**32,  # Replicate's Flux models take a 32-bit seed
            "aspect_ratio": closest_aspect_ratio(request.width, request.height),
            "num_outputs": 1,
            "output_format": "png",
            "num_inference_steps": min(request.steps, 4) if self.model.endswith("schnell") else request.steps,
        }
        if not self.model.endswith("schnell"):
            payload["guidance"] = request.guidance_scale
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
        prediction = self._create(payload)
        while prediction.get("status") not in TERMINAL:
            if time.monotonic() > deadline:
                self._cancel(prediction)
                raise GenerationFailed(
                    f"Replicate prediction {prediction.get('id')} did not finish within {self.timeout_s:g}s"
                )
            time.sleep(self.poll_s)
            prediction = self._request("GET", f"/v1/predictions/{prediction['id']}")
        if prediction["status"] != "succeeded":
            error = str(prediction.get("error") or prediction["status"]).splitlines()[0][:300]
            ident, status = prediction.get("id"), prediction["status"]
            raise GenerationFailed(f"Replicate prediction {ident} {status} (seed {request.seed}): {error}")
        output = prediction.get("output")
        url = output[0] if isinstance(output, list) and output else output
        if not isinstance(url, str):
            raise GenerationFailed(f"Replicate prediction {prediction.get('id')} returned no image")
        image = self._fetch_image(url)
        metrics = prediction.get("metrics") or {}
        record = GenerationRecord(
            backend=self.name,
            model=self.model,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            seed=request.seed,
            steps=request.steps,
            guidance_scale=request.guidance_scale,
            width=request.width,
            height=request.height,
            loras=tuple(
                LoraRef(source=s.source, weight_name=s.weight_name, scale=s.scale) for s in request.loras
            ),
            extra={
                "prediction_id": str(prediction.get("id")),
                "aspect_ratio": str(payload["aspect_ratio"]),
                "output_size": f"{image.width}x{image.height}",
                "predict_time_s": str(metrics.get("predict_time", "")),
            },
        )
        return GeneratedImage(
            image=image,
            record=record,
            seconds=time.perf_counter() - started,
            cost_usd=self.cost_usd,
            # Replicate reports one server time (predict_time_s in the record); load, denoise and decode
            # are not separable from outside, so only the cost applies.
            timings=timing_extra(cost_usd=self.cost_usd),
        )

    # -- HTTP ------------------------------------------------------------------------------------

    def _create(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._request(
            "POST",
            f"/v1/models/{self.model}/predictions",
            json={"input": payload},
            headers={"Prefer": f"wait={self.wait_s}"},
        )

    def _cancel(self, prediction: dict[str, Any]) -> None:
        try:
            self._client.post(f"/v1/predictions/{prediction['id']}/cancel")
        except httpx.HTTPError as exc:
            logger.warning("cancelling Replicate prediction %s failed: %s", prediction.get("id"), exc)

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        rate_limited = server_errors = 0
        while True:
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if server_errors >= MAX_SERVER_ERROR_RETRIES or method != "GET":
                    raise GenerationFailed(f"Replicate {method} {path}: {type(exc).__name__}") from exc
                server_errors += 1
                time.sleep(self._backoff(server_errors, None))
                continue
            status = response.status_code
            if status == 429 and rate_limited < MAX_RATE_LIMIT_RETRIES:
                rate_limited += 1
                wait = self._backoff(rate_limited, response.headers.get("Retry-After"))
                logger.info("Replicate rate limit on %s %s; retrying in %.1fs", method, path, wait)
                time.sleep(wait)
                continue
            if status >= 500 and server_errors < MAX_SERVER_ERROR_RETRIES and method == "GET":
                server_errors += 1
                time.sleep(self._backoff(server_errors, None))
                continue
            if status in (401, 403):
                raise InvalidInput(
                    "Replicate rejected the API token (check CONTENTFORGE_REPLICATE_API_TOKEN)"
                )
            if status == 404:
                raise InvalidInput(f"Replicate has no model or prediction at {path}")
            if status == 422:
                raise InvalidInput(f"Replicate refused the input for {self.model}: {_detail(response)}")
            if status == 429:
                raise GenerationFailed(f"Replicate rate limit persisted after {rate_limited} retries")
            if status >= 400:
                raise GenerationFailed(f"Replicate {method} {path} answered {status}: {_detail(response)}")
            return dict(response.json())

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(60.0, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return min(30.0, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def _fetch_image(self, url: str) -> Image.Image:
        try:
            response = self._download.get(url)
            response.raise_for_status()
            image = Image.open(io.BytesIO(response.content))
            image.load()
        except (httpx.HTTPError, OSError) as exc:
            raise GenerationFailed(f"downloading the Replicate output failed: {type(exc).__name__}") from exc
        return image.convert("RGB")

    def close(self) -> None:
        self._client.close()
        self._download.close()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body.get("detail") or body.get("title") or body)[:300]
    except ValueError:
        return response.text[:300]
