"""The OpenAI moderation backend against a local server speaking ``POST /v1/moderations``.

The server implements the documented contract: bearer auth, a JSON body with ``model`` and a
multi-modal ``input`` array, a ``results`` list with ``categories`` (booleans) and
``category_scores`` under OpenAI's slash-separated names, and 429 with ``Retry-After``.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from contentforge.config import Settings
from contentforge.domain.models import Verdict
from contentforge.errors import InvalidInput
from contentforge.moderation import ModerationInput, ModerationPolicy, Moderator, TextRulesBackend
from contentforge.moderation.cache import ModerationCache, content_key
from contentforge.moderation.factory import build_moderator
from contentforge.moderation.openai_backend import (
    CATEGORY_GROUPS,
    ModerationUnavailable,
    OpenAIModerationBackend,
)

OPENAI_CATEGORIES = (
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
    "hate",
    "hate/threatening",
    "harassment",
    "harassment/threatening",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "illicit",
    "illicit/violent",
)
API_KEY = "sk-test-do-not-leak-123"


def moderation_response(scores: dict[str, float], flag_at: float = 0.5) -> dict[str, Any]:
    full = {name: float(scores.get(name, 0.0001)) for name in OPENAI_CATEGORIES}
    categories = {name: value >= flag_at for name, value in full.items()}
    return {
        "id": "modr-test",
        "model": "omni-moderation-2024-09-26",
        "results": [
            {
                "flagged": any(categories.values()),
                "categories": categories,
                "category_scores": full,
                "category_applied_input_types": {name: ["text"] for name in OPENAI_CATEGORIES},
            }
        ],
    }


class FakeOpenAI:
    """A moderation server: replies from a script of (status, headers, body), then ``default``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        self.default: dict[str, Any] = moderation_response({})
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body, "at": time.monotonic()}
                )
                if self.path != "/v1/moderations":
                    self._reply(404, {}, {"error": {"message": "not found", "type": "invalid_request_error"}})
                elif self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self._reply(401, {}, {"error": {"message": "bad key", "type": "invalid_api_key"}})
                elif fake.script:
                    self._reply(*fake.script.pop(0))
                else:
                    self._reply(200, {}, fake.default)

            def _reply(self, status: int, headers: dict[str, str], payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture()
def image() -> Image.Image:
    img = Image.new("RGB", (32, 24), (200, 120, 40))
    img.putpixel((3, 4), (1, 2, 3))
    return img


def backend(server: FakeOpenAI, tmp_path: Path, **kwargs: Any) -> OpenAIModerationBackend:
    return OpenAIModerationBackend(
        API_KEY,
        base_url=server.base_url,
        cache=ModerationCache(tmp_path / "cache"),
        timeout_s=10,
        **kwargs,
    )


def policy() -> ModerationPolicy:
    return ModerationPolicy.from_settings(Settings(_env_file=None))


def test_flagged_image_is_rejected_and_request_carries_image_and_texts(
    fake_openai: FakeOpenAI, tmp_path: Path, image: Image.Image
) -> None:
    fake_openai.default = moderation_response({"sexual": 0.97, "violence": 0.12})
    moderator = Moderator([backend(fake_openai, tmp_path)], policy())
    verdict = moderator.moderate(image, ["a caption", "second hook #tag"])

    assert verdict.verdict is Verdict.rejected
    assert verdict.scores["sexual"] == pytest.approx(0.97)
    assert verdict.scores["violence"] == pytest.approx(0.12)
    assert any("sexual 0.97 >= reject threshold" in r and "openai" in r for r in verdict.reasons)

    (request,) = fake_openai.requests
    body = request["body"]
    assert body["model"] == "omni-moderation-latest"
    texts = [item for item in body["input"] if item["type"] == "text"]
    images = [item for item in body["input"] if item["type"] == "image_url"]
    assert len(texts) == 1 and "a caption" in texts[0]["text"] and "second hook #tag" in texts[0]["text"]
    (image_item,) = images
    url = image_item["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.format == "PNG" and sent.size == image.size
    assert sent.convert("RGB").tobytes() == image.tobytes()


def test_clean_content_is_safe(fake_openai: FakeOpenAI, tmp_path: Path, image: Image.Image) -> None:
    verdict = Moderator([backend(fake_openai, tmp_path)], policy()).moderate(image, ["leg day done"])
    assert verdict.verdict is Verdict.safe
    assert max(verdict.scores.values()) < 0.01
    assert verdict.backends == ["openai"]


def test_429_with_retry_after_then_success(
    fake_openai: FakeOpenAI, tmp_path: Path, image: Image.Image
) -> None:
    fake_openai.script = [
        (429, {"Retry-After": "1"}, {"error": {"message": "Rate limit reached", "type": "requests"}})
    ]
    fake_openai.default = moderation_response({"hate": 0.8})
    result = backend(fake_openai, tmp_path, max_retries=2).scores(ModerationInput(image, ("text",)))

    assert result.scores["hate"] == pytest.approx(0.8)
    assert len(fake_openai.requests) == 2
    waited = fake_openai.requests[1]["at"] - fake_openai.requests[0]["at"]
    assert waited >= 0.9, f"Retry-After: 1 not honoured (retried after {waited:.2f}s)"


def test_persistent_5xx_fails_typed_after_retries_without_leaking_the_key(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    error = (503, {"Retry-After": "0"}, {"error": {"message": "overloaded", "type": "server_error"}})
    fake_openai.script = [error] * 5
    with pytest.raises(ModerationUnavailable) as caught:
        backend(fake_openai, tmp_path, max_retries=1).scores(ModerationInput(None, ("text",)))
    assert len(fake_openai.requests) == 2  # first try + one retry
    assert "503" in str(caught.value)
    assert API_KEY not in str(caught.value) and API_KEY not in repr(caught.value.__cause__)


def test_results_are_cached_per_content_hash(
    fake_openai: FakeOpenAI, tmp_path: Path, image: Image.Image
) -> None:
    fake_openai.default = moderation_response({"harassment": 0.3})
    first = backend(fake_openai, tmp_path).scores(ModerationInput(image, ("hello",)))
    # A new process (new backend, same data dir) sends nothing for the same content.
    again = backend(fake_openai, tmp_path)
    second = again.scores(ModerationInput(image, ("hello",)))
    assert len(fake_openai.requests) == 1 and again.requests_sent == 0
    assert second.scores == first.scores
    assert any("cached response" in r for r in second.reasons)
    # Any change (text or one pixel) is a miss.
    again.scores(ModerationInput(image, ("hello!",)))
    changed = image.copy()
    changed.putpixel((0, 0), (0, 0, 0))
    again.scores(ModerationInput(changed, ("hello",)))
    assert len(fake_openai.requests) == 3


def test_content_key_distinguishes_boundaries() -> None:
    assert content_key("m", b"ab", ["c"]) != content_key("m", b"a", ["bc"])
    assert content_key("m", None, ["a", "b"]) != content_key("m", None, ["ab"])
    assert content_key("m1", None, ["a"]) != content_key("m2", None, ["a"])


def test_groups_take_the_max_of_their_openai_categories(tmp_path: Path) -> None:
    scorer = OpenAIModerationBackend(API_KEY, client=object())
    result = scorer.scores_from_openai(
        {"violence": 0.1, "violence/graphic": 0.82, "self-harm/instructions": 0.66, "harassment": 0.2}
    )
    assert result.scores["violence"] == pytest.approx(0.82)
    assert result.scores["self_harm"] == pytest.approx(0.66)
    assert result.scores["harassment"] == pytest.approx(0.2)
    assert any("from violence/graphic" in r for r in result.reasons)
    assert set(CATEGORY_GROUPS) == {"sexual", "violence", "hate", "harassment", "self_harm"}


def test_sexual_minors_always_rejects_even_when_backends_disagree(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.default = moderation_response({"sexual": 0.05, "sexual/minors": 0.3})
    moderator = Moderator([backend(fake_openai, tmp_path), TextRulesBackend()], policy())
    assessment = moderator.assess(None, ["a harmless caption"])
    assert assessment.verdict.verdict is Verdict.rejected
    assert assessment.verdict.scores["sexual"] == 1.0
    assert not assessment.needs_review
    assert any("sexual/minors" in r and "always rejected" in r for r in assessment.verdict.reasons)


def test_build_moderator_with_openai_uses_base_url_and_data_dir_cache(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,
        moderation_backends="local,openai",
        openai_api_key=API_KEY,
        openai_moderation_base_url=fake_openai.base_url,
        data_dir=tmp_path / "data",
    )
    moderator = build_moderator(settings)
    assert [b.name for b in moderator.backends] == ["nudenet", "text_rules", "openai"]
    openai_backend = moderator.backends[-1]
    openai_backend.scores(ModerationInput(None, ("some caption",)))
    assert len(fake_openai.requests) == 1
    assert list((tmp_path / "data" / "cache" / "moderation").rglob("*.json"))


def test_missing_key_or_unknown_backend_fails_before_any_work() -> None:
    with pytest.raises(InvalidInput, match="CONTENTFORGE_OPENAI_API_KEY"):
        build_moderator(Settings(_env_file=None, moderation_backends="openai"))
    with pytest.raises(InvalidInput, match="comma list"):
        build_moderator(Settings(_env_file=None, moderation_backends="local,perspective"))
