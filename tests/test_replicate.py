"""The Replicate backend against a local server speaking Replicate's prediction API."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from contentforge.config import Settings
from contentforge.domain import LoraSpec
from contentforge.errors import GenerationFailed, InvalidInput, InvalidLora
from contentforge.images.protocol import ImageRequest
from contentforge.images.replicate_backend import ReplicateBackend, closest_aspect_ratio

TOKEN = "r8_secret_token_value"


class FakeReplicate:
    """Predictions finish after ``polls_needed`` GETs; prompts containing 'fail' fail; 429s on demand."""

    def __init__(self) -> None:
        self.predictions: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.rate_limit_next = 0
        self.polls_needed = 2
        self.lock = threading.Lock()

    def png(self, seed: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (seed % 256, 10, 20)).save(buffer, format="PNG")
        return buffer.getvalue()


@pytest.fixture
def server() -> Iterator[tuple[FakeReplicate, str]]:
    state = FakeReplicate()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._json(401, {"title": "Unauthenticated", "detail": "You did not pass a valid token"})
                return False
            return True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                state.requests.append(("POST", self.path, dict(self.headers), body))
            if not self._authorized():
                return
            if self.path.endswith("/cancel"):
                self._json(200, {"status": "canceled"})
                return
            if not self.path.startswith("/v1/models/") or not self.path.endswith("/predictions"):
                self._json(404, {"detail": "Not found"})
                return
            with state.lock:
                if state.rate_limit_next:
                    state.rate_limit_next -= 1
                    self._json(429, {"detail": "Request was throttled."}, {"Retry-After": "0"})
                    return
                ident = f"p{len(state.predictions)}"
                state.predictions[ident] = {"input": body["input"], "polls": 0}
            if "prompt" not in body["input"]:
                self._json(422, {"detail": "- input: prompt is required"})
                return
            self._json(201, self.prediction(ident))

        def prediction(self, ident: str) -> dict[str, Any]:
            entry = state.predictions[ident]
            done = entry["polls"] >= state.polls_needed
            host = f"http://127.0.0.1:{self.server.server_address[1]}"
            body: dict[str, Any] = {
                "id": ident,
                "model": "black-forest-labs/flux-schnell",
                "status": "processing" if not done else "succeeded",
                "input": entry["input"],
                "output": None,
                "error": None,
                "urls": {
                    "get": f"{host}/v1/predictions/{ident}",
                    "cancel": f"{host}/v1/predictions/{ident}/cancel",
                },
            }
            if done and "fail" in entry["input"]["prompt"]:
                body |= {
                    "status": "failed",
                    "error": "NSFW content detected. Try running it again.\nTraceback...",
                }
            elif done:
                body |= {"output": [f"{host}/files/{ident}.png"], "metrics": {"predict_time": 0.8}}
            return body

        def do_GET(self) -> None:
            with state.lock:
                state.requests.append(("GET", self.path, dict(self.headers), None))
            if self.path.startswith("/files/"):
                ident = self.path.removeprefix("/files/").removesuffix(".png")
                data = state.png(int(state.predictions[ident]["input"]["seed"]))
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if not self._authorized():
                return
            ident = self.path.rsplit("/", 1)[-1]
            with state.lock:
                state.predictions[ident]["polls"] += 1
            self._json(200, self.prediction(ident))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def backend(url: str, token: str = TOKEN, **extra: Any) -> ReplicateBackend:
    return ReplicateBackend(
        token=token,
        model="black-forest-labs/flux-schnell",
        base_url=url,
        poll_s=0.01,
        backoff_s=0.01,
        cost_usd=0.003,
        **extra,
    )


def request(prompt: str = "a portrait in a cafe", seed: int = 42, **extra: Any) -> ImageRequest:
    fields: dict[str, Any] = {"steps": 4, "guidance_scale": 0.0, "width": 1024, "height": 1280} | extra
    return ImageRequest(prompt=prompt, seed=seed, **fields)


def test_success_creates_waits_polls_and_downloads(server: tuple[FakeReplicate, str]) -> None:
    state, url = server
    result = backend(url).generate(request())
    assert result.image.size == (64, 48) and result.image.getpixel((0, 0)) == (42, 10, 20)
    assert result.cost_usd == 0.003
    record = result.record
    assert (record.backend, record.model, record.seed) == ("replicate", "black-forest-labs/flux-schnell", 42)
    assert record.extra["prediction_id"] == "p0" and record.extra["aspect_ratio"] == "4:5"
    assert record.extra["predict_time_s"] == "0.8"

    method, path, headers, body = state.requests[0]
    assert (method, path) == ("POST", "/v1/models/black-forest-labs/flux-schnell/predictions")
    assert headers["Prefer"] == "wait=60" and headers["Authorization"] == f"Bearer {TOKEN}"
    assert body["input"] == {
        "prompt": "a portrait in a cafe",
        "seed": 42,
        "aspect_ratio": "4:5",
        "num_outputs": 1,
        "output_format": "png",
        "num_inference_steps": 4,
    }
    paths = [(m, p) for m, p, _, _ in state.requests]
    assert paths[1:] == [
        ("GET", "/v1/predictions/p0"),
        ("GET", "/v1/predictions/p0"),
        ("GET", "/files/p0.png"),
    ]
    # The output host gets no token.
    assert "Authorization" not in state.requests[-1][2]


def test_failed_prediction_is_a_one_line_generation_failure(server: tuple[FakeReplicate, str]) -> None:
    _, url = server
    with pytest.raises(GenerationFailed, match=r"p0 failed \(seed 7\): NSFW content detected") as exc:
        backend(url).generate(request(prompt="this will fail", seed=7))
    assert "\n" not in str(exc.value)


def test_rate_limit_is_retried_with_backoff(server: tuple[FakeReplicate, str]) -> None:
    state, url = server
    state.rate_limit_next = 2
    result = backend(url).generate(request(seed=3))
    posts = [p for m, p, _, _ in state.requests if m == "POST"]
    assert len(posts) == 3 and result.image.getpixel((0, 0)) == (3, 10, 20)

    state.rate_limit_next = 10
    with pytest.raises(GenerationFailed, match="rate limit persisted after 5 retries"):
        backend(url).generate(request(seed=4))


def test_bad_token_bad_input_and_timeout(server: tuple[FakeReplicate, str]) -> None:
    state, url = server
    with pytest.raises(InvalidInput, match="rejected the API token") as exc:
        backend(url, token="r8_wrong").generate(request())
    assert "r8_wrong" not in str(exc.value)
    state.polls_needed = 10**6
    with pytest.raises(GenerationFailed, match=r"did not finish within 0\.2s"):
        backend(url, timeout_s=0.2).generate(request())
    assert any(p.endswith("/cancel") for m, p, _, _ in state.requests if m == "POST")


def test_inputs_loras_and_settings() -> None:
    flux = ReplicateBackend(token=TOKEN, model="black-forest-labs/flux-dev-lora")
    payload = flux.build_input(
        request(loras=(LoraSpec(source="someone/anna-flux-lora", scale=0.9),), steps=28, guidance_scale=3.5)
    )
    assert payload["lora_weights"] == "someone/anna-flux-lora" and payload["lora_scale"] == 0.9
    assert payload["num_inference_steps"] == 28 and payload["guidance"] == 3.5
    with pytest.raises(InvalidLora, match="local file"):
        flux.build_input(request(loras=(LoraSpec(source="/loras/anna.safetensors"),)))
    assert closest_aspect_ratio(1024, 1024) == "1:1" and closest_aspect_ratio(1920, 1080) == "16:9"
    with pytest.raises(InvalidInput, match="REPLICATE_API_TOKEN"):
        ReplicateBackend.from_settings(Settings(_env_file=None, image_profile="replicate"))  # type: ignore[call-arg]
    built = ReplicateBackend.from_settings(
        Settings(_env_file=None, image_profile="replicate", replicate_api_token=TOKEN)  # type: ignore[call-arg]
    )
    assert TOKEN not in built.describe() and "flux-schnell" in built.describe()
