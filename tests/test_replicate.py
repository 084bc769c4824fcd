"""The Replicate backend, through the official ``replicate`` client, against a local Replicate API.

``FakeReplicate`` speaks the prediction API as documented (https://replicate.com/docs/reference/http):
create (``POST /v1/models/{owner}/{name}/predictions``, ``Prefer: wait``), poll
(``GET /v1/predictions/{id}``), cancel, and output files on an unauthenticated path. It checks the
bearer token first, answers 429 with ``Retry-After``, 404 for unknown models and 422 for refused
input on demand, and records every request so the tests can see what the client really sent.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image
from pydantic import SecretStr
from support.loopback import LoopbackServer

from contentforge.batch import image_request_for
from contentforge.config import Settings
from contentforge.domain import LoraRef, LoraSpec
from contentforge.errors import GenerationFailed, InvalidInput, InvalidLora
from contentforge.images.protocol import ImageRequest
from contentforge.images.replicate_backend import (
    DEFAULT_MODEL,
    PRO_ASPECT_RATIOS,
    ReplicateBackend,
    check_output_url,
    closest_aspect_ratio,
)
from contentforge.personas import sample_persona
from contentforge.retry_after import retry_after_seconds

TOKEN = "r8_secret_token_value"
LORA_MODEL = "black-forest-labs/flux-dev-lora"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeReplicate(LoopbackServer):
    """Predictions finish after ``polls_needed`` polls; prompts containing 'fail' fail, 'refuse' get a 422."""

    def __init__(self) -> None:
        self.predictions: dict[str, dict[str, Any]] = {}
        self.requests: list[Seen] = []
        self.rate_limit_next = 0
        self.retry_after: str | None = "0"
        self.fail_polls_next = 0
        self.polls_needed = 2
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps(body).encode(), "application/json", headers or {})

            def _seen(self, body: Any) -> dict[str, str]:
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server.lock:
                    server.requests.append(Seen(self.command, self.path, headers, body))
                return headers

            def _authorized(self, headers: dict[str, str]) -> bool:
                if headers.get("authorization") != f"Bearer {TOKEN}":
                    self._json(401, {"title": "Unauthenticated", "detail": "You did not pass a valid token"})
                    return False
                return True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorized(self._seen(body)):
                    return
                parts = self.path.strip("/").split("/")
                if len(parts) == 4 and parts[:2] == ["v1", "predictions"] and parts[3] == "cancel":
                    with server.lock:
                        server.predictions[parts[2]]["canceled"] = True
                    self._json(200, server.prediction(parts[2]))
                    return
                if len(parts) != 5 or parts[:2] != ["v1", "models"] or parts[4] != "predictions":
                    self._json(404, {"detail": "Not found"})
                    return
                if parts[2] == "nobody":
                    self._json(404, {"title": "Not found", "detail": "The requested resource does not exist"})
                    return
                with server.lock:
                    if server.rate_limit_next:
                        server.rate_limit_next -= 1
                        limited = (
                            {"Retry-After": server.retry_after} if server.retry_after is not None else {}
                        )
                        self._json(429, {"detail": "Request was throttled."}, limited)
                        return
                if "refuse" in body["input"].get("prompt", ""):
                    self._json(422, {"detail": "- input.prompt: flagged as sensitive\n- more"})
                    return
                with server.lock:
                    ident = f"p{len(server.predictions)}"
                    server.predictions[ident] = {
                        "model": f"{parts[2]}/{parts[3]}",
                        "input": body["input"],
                        "polls": 0,
                        "canceled": False,
                    }
                self._json(201, server.prediction(ident))

            def do_GET(self) -> None:
                headers = self._seen(None)
                if self.path.startswith("/files/"):
                    ident = self.path.removeprefix("/files/").removesuffix(".png")
                    data = server.png(int(server.predictions[ident]["input"]["seed"]))
                    self._send(200, data, "image/png", {})
                    return
                if not self._authorized(headers):
                    return
                with server.lock:
                    if server.fail_polls_next:
                        server.fail_polls_next -= 1
                        self._json(500, {"detail": "Internal server error"})
                        return
                    ident = self.path.rsplit("/", 1)[-1]
                    server.predictions[ident]["polls"] += 1
                self._json(200, server.prediction(ident))

        self._serve(Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def posts(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "POST" and not r.path.endswith("/cancel")]

    def png(self, seed: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (seed % 256, 10, 20)).save(buffer, format="PNG")
        return buffer.getvalue()

    def prediction(self, ident: str) -> dict[str, Any]:
        """The prediction as the API shows it; Flux 1.1 Pro outputs one URL, the other Flux models a list."""
        entry = self.predictions[ident]
        done = entry["polls"] >= self.polls_needed
        body: dict[str, Any] = {
            "id": ident,
            "model": entry["model"],
            "version": "dp-4d0bcc010b3049749a251855f12800be",
            "status": "processing",
            "input": entry["input"],
            "output": None,
            "logs": "",
            "error": None,
            "metrics": {},
            "created_at": "2025-01-01T00:00:00.000Z",
            "urls": {
                "get": f"{self.url}/v1/predictions/{ident}",
                "cancel": f"{self.url}/v1/predictions/{ident}/cancel",
            },
        }
        if entry["canceled"]:
            body |= {"status": "canceled"}
        elif done and "fail" in entry["input"]["prompt"]:
            body |= {
                "status": "failed",
                "error": "NSFW content detected. Try running it again.\nTraceback...",
            }
        elif done:
            url = f"{self.url}/files/{ident}.png"
            output = url if entry["model"] == DEFAULT_MODEL else [url]
            body |= {"status": "succeeded", "output": output, "metrics": {"predict_time": 0.8}}
        return body


@pytest.fixture
def fake() -> Iterator[FakeReplicate]:
    with FakeReplicate() as server:
        yield server


@pytest.fixture
def make(fake: FakeReplicate) -> Iterator[Callable[..., ReplicateBackend]]:
    """Backends on the fake (fast polls and backoff), closed after the test."""
    built: list[ReplicateBackend] = []

    def build(**extra: Any) -> ReplicateBackend:
        options: dict[str, Any] = {
            "token": SecretStr(TOKEN),
            "base_url": fake.url,
            "poll_s": 0.01,
            "backoff_s": 0.01,
            "cost_usd": 0.04,
        } | extra
        backend = ReplicateBackend(**options)
        built.append(backend)
        return backend

    yield build
    for backend in built:
        backend.close()


def request(prompt: str = "a portrait in a cafe", seed: int = 42, **extra: Any) -> ImageRequest:
    fields: dict[str, Any] = {"steps": 28, "guidance_scale": 3.5, "width": 1024, "height": 1280} | extra
    return ImageRequest(prompt=prompt, seed=seed, **fields)


def test_success_goes_through_the_official_client(
    fake: FakeReplicate, make: Callable[..., ReplicateBackend]
) -> None:
    result = make().generate(request())

    assert result.image.size == (64, 48) and result.image.getpixel((0, 0)) == (42, 10, 20)
    stored = result.stored_record()
    assert (stored.backend, stored.model, stored.seed) == ("replicate", DEFAULT_MODEL, 42)
    assert result.cost_usd == 0.04 and stored.extra["cost_usd"] == "0.04"
    assert stored.extra["prediction_id"] == "p0" and stored.extra["predict_time_s"] == "0.8"
    assert stored.extra["aspect_ratio"] == "4:5" and stored.extra["output_size"] == "64x48"
    # Per-run facts stay out of ``record`` and of the stored record's fingerprint: regenerating the same
    # request (a new prediction) gives the same fingerprint.
    assert "prediction_id" not in result.record.extra
    assert stored.fingerprint() == result.record.fingerprint()

    create = fake.requests[0]
    assert (create.method, create.path) == ("POST", f"/v1/models/{DEFAULT_MODEL}/predictions")
    assert create.headers["prefer"] == "wait=60"
    # Flux 1.1 Pro takes no step count, guidance or LoRA.
    assert create.body == {
        "input": {"prompt": "a portrait in a cafe", "seed": 42, "aspect_ratio": "4:5", "output_format": "png"}
    }
    assert [(r.method, r.path) for r in fake.requests[1:]] == [
        ("GET", "/v1/predictions/p0"),
        ("GET", "/v1/predictions/p0"),
        ("GET", "/files/p0.png"),
    ]
    api_calls = fake.requests[:-1]
    assert all(r.headers["user-agent"].startswith("replicate-python/") for r in api_calls)
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in api_calls)
    assert "authorization" not in fake.requests[-1].headers  # the output host never sees the token


def test_failed_prediction_is_a_one_line_generation_failure(make: Callable[..., ReplicateBackend]) -> None:
    with pytest.raises(GenerationFailed, match=r"p0 failed \(seed 7\): NSFW content detected") as exc:
        make().generate(request(prompt="this will fail", seed=7))
    assert "\n" not in str(exc.value)


def test_rate_limited_creation_is_retried_with_retry_after_and_backoff(
    fake: FakeReplicate, make: Callable[..., ReplicateBackend]
) -> None:
    sleeps: list[float] = []
    fake.rate_limit_next, fake.retry_after = 2, "7"
    result = make(sleep=sleeps.append).generate(request(seed=3))
    # Three POSTs arrived: the two 429s and the success; the client itself resent none of them.
    assert len(fake.posts()) == 3 and result.image.getpixel((0, 0)) == (3, 10, 20)
    assert all(7.0 <= wait <= 7.01 for wait in sleeps[:2])  # Retry-After plus at most backoff_s of jitter

    sleeps.clear()
    fake.rate_limit_next, fake.retry_after = 3, None  # no Retry-After: exponential backoff with jitter
    make(sleep=sleeps.append, backoff_s=0.5).generate(request(seed=4))
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0 and 1.0 <= sleeps[2] <= 2.0
    assert len(fake.posts()) == 3 + 4

    fake.rate_limit_next, fake.retry_after = 100, "0"
    with pytest.raises(GenerationFailed, match="rate limit persisted after 5 retries"):
        make(sleep=sleeps.append).generate(request(seed=5))
    assert len(fake.posts()) == 7 + 6

    sleeps.clear()
    fake.rate_limit_next, fake.retry_after = 1, format_datetime(datetime.now(UTC) + timedelta(hours=1), True)
    with pytest.raises(GenerationFailed, match=r"waiting 3\d{3}\.\ds would pass the 60s timeout"):
        make(sleep=sleeps.append, timeout_s=60).generate(request(seed=6))
    assert sleeps == []  # fails at once instead of sleeping past the deadline


def test_polling_tolerates_a_few_server_errors(
    fake: FakeReplicate, make: Callable[..., ReplicateBackend]
) -> None:
    fake.fail_polls_next = 3
    assert make().generate(request(seed=9)).image.getpixel((0, 0)) == (9, 10, 20)
    fake.fail_polls_next = 4
    with pytest.raises(GenerationFailed, match="polling failed 4 times in a row"):
        make().generate(request(seed=9))


def test_timeout_cancels_the_prediction(fake: FakeReplicate, make: Callable[..., ReplicateBackend]) -> None:
    fake.polls_needed = 10**6
    with pytest.raises(GenerationFailed, match=r"p0 did not finish within 0\.2s \(cancelled\)"):
        make(timeout_s=0.2).generate(request())
    assert [r.path for r in fake.requests if r.path.endswith("/cancel")] == ["/v1/predictions/p0/cancel"]
    assert fake.predictions["p0"]["canceled"]


def test_persona_lora_arrives_as_lora_weights_and_scale(
    fake: FakeReplicate, make: Callable[..., ReplicateBackend]
) -> None:
    lora = LoraSpec(source="someone/anna-flux-lora", trigger_word="TOK_anna", scale=0.9)
    persona = sample_persona().model_copy(update={"lora": lora})
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        image_profile="replicate",
        replicate_api_token=TOKEN,
        image_steps=28,
        image_guidance=3.5,
        image_width=1024,
        image_height=1024,
    )
    piece = SimpleNamespace(prompt="TOK_anna, in a cafe, soft light", negative_prompt="", seed=5)
    result = make(model=LORA_MODEL).generate(image_request_for(piece, persona, settings))  # type: ignore[arg-type]

    assert fake.requests[0].path == f"/v1/models/{LORA_MODEL}/predictions"
    assert fake.requests[0].body["input"] == {
        "prompt": "TOK_anna, in a cafe, soft light",
        "seed": 5,
        "aspect_ratio": "1:1",
        "output_format": "png",
        "num_inference_steps": 28,
        "guidance": 3.5,
        "lora_weights": "someone/anna-flux-lora",
        "lora_scale": 0.9,
    }
    assert result.record.loras == (LoraRef(source="someone/anna-flux-lora", scale=0.9),)
    assert result.image.getpixel((0, 0)) == (5, 10, 20)  # a list output (Flux dev) is read too


def test_a_lora_that_cannot_run_fails_before_any_request(
    fake: FakeReplicate, make: Callable[..., ReplicateBackend]
) -> None:
    anna, other = LoraSpec(source="someone/anna-flux-lora"), LoraSpec(source="someone/style-lora")
    with pytest.raises(InvalidLora, match=r"flux-1\.1-pro on Replicate takes no LoRA"):
        make().generate(request(loras=(anna,)))
    with pytest.raises(InvalidLora, match="one LoRA per prediction, got 2"):
        make(model=LORA_MODEL).generate(request(loras=(anna, other)))
    with pytest.raises(InvalidLora, match="local file"):
        make(model=LORA_MODEL).generate(request(loras=(LoraSpec(source="/loras/anna.safetensors"),)))
    assert fake.requests == []


def test_api_refusals_are_one_line_input_errors(
    fake: FakeReplicate, make: Callable[..., ReplicateBackend]
) -> None:
    with pytest.raises(InvalidInput, match="rejected the API token"):
        make(token=SecretStr("r8_wrong")).generate(request())
    with pytest.raises(InvalidInput, match="no model nobody/missing"):
        make(model="nobody/missing").generate(request())
    with pytest.raises(
        InvalidInput, match=r"refused the input for .*: - input\.prompt: flagged as sensitive$"
    ):
        make().generate(request(prompt="please refuse this"))
    assert len(fake.posts()) == 3 and fake.predictions == {}


def test_token_never_in_logs_errors_or_records(
    fake: FakeReplicate, make: Callable[..., ReplicateBackend], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.rate_limit_next = 1
    ok = make().generate(request())
    with pytest.raises(GenerationFailed) as failed:
        make().generate(request(prompt="this will fail"))
    with pytest.raises(InvalidInput) as rejected:
        make(token=SecretStr("r8_wrong_token")).generate(request())
    backend = make()
    texts = [
        caplog.text,
        str(failed.value),
        str(rejected.value),
        ok.stored_record().model_dump_json(),
        backend.describe(),
        repr(backend),
    ]
    # The logs do say what happened, to which prediction.
    assert "Replicate prediction p0" in caplog.text and "rate limit" in caplog.text
    for text in texts:
        assert TOKEN not in text and "r8_wrong_token" not in text


def test_outputs_are_size_limited_and_never_local_for_a_remote_api(
    make: Callable[..., ReplicateBackend],
) -> None:
    with pytest.raises(GenerationFailed, match="larger than 100 bytes"):
        make(max_output_bytes=100).generate(request())

    for url in (
        "http://replicate.delivery/x.png",
        "https://127.0.0.1/x.png",
        "https://169.254.169.254/latest",
    ):
        with pytest.raises(GenerationFailed, match="refused"):
            check_output_url(url, allow_local=False)
    with pytest.raises(GenerationFailed, match="scheme 'file'"):
        check_output_url("file:///etc/passwd", allow_local=True)
    check_output_url("http://127.0.0.1:9/x.png", allow_local=True)  # a local API's own outputs
    remote = ReplicateBackend(token=SecretStr(TOKEN), base_url="https://api.replicate.com")
    with pytest.raises(GenerationFailed, match="local address; refused"):
        remote._fetch_image("https://[::1]/files/p0.png")  # refused before any connection
    remote.close()


def test_model_inputs_and_settings() -> None:
    pro = ReplicateBackend(token=SecretStr(TOKEN))
    assert pro.model == DEFAULT_MODEL
    assert pro.build_input(request(width=1920, height=816))["aspect_ratio"] == "16:9"  # no 21:9 on Pro
    assert "21:9" not in PRO_ASPECT_RATIOS and closest_aspect_ratio(1920, 816) == "21:9"
    schnell = ReplicateBackend(token=SecretStr(TOKEN), model="black-forest-labs/flux-schnell")
    payload = schnell.build_input(request())
    assert payload["num_inference_steps"] == 4 and "guidance" not in payload
    custom = ReplicateBackend(token=SecretStr(TOKEN), model="someone/flux-dev-custom-lora")
    assert custom.build_input(request(loras=(LoraSpec(source="someone/x", scale=0.5),)))["lora_scale"] == 0.5
    with pytest.raises(InvalidInput, match="not a version"):
        ReplicateBackend(token=SecretStr(TOKEN), model="someone/model:1234abcd")
    for backend in (pro, schnell, custom):
        backend.close()

    assert retry_after_seconds("7") == 7.0 and retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None and retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0

    with pytest.raises(InvalidInput, match="REPLICATE_API_TOKEN"):
        ReplicateBackend.from_settings(Settings(_env_file=None, image_profile="replicate"))  # type: ignore[call-arg]
    settings = Settings(_env_file=None, image_profile="replicate", replicate_api_token=TOKEN)  # type: ignore[call-arg]
    built = ReplicateBackend.from_settings(settings)
    assert TOKEN not in built.describe() and settings.replicate_model in built.describe()
    built.close()
