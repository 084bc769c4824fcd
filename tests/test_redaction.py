"""Secrets never reach logs: ``contentforge.redaction`` and the provider boundaries that use it."""

from __future__ import annotations

import logging
import traceback

import pytest
from pydantic import SecretStr
from support.publishing import FakeApi, Request, Response, serve

from contentforge.moderation.openai_backend import ModerationUnavailable, OpenAIModerationBackend
from contentforge.moderation.protocol import ModerationInput
from contentforge.redaction import REDACTED, redact, redact_exception, redact_text
from contentforge.text.providers.errors import ProviderAuthError
from contentforge.text.providers.openai_provider import OpenAIProvider

KEY = "cf-moderation-key-7d1e2b9a44"
"""Deliberately not ``sk-``-shaped: only the configured value tells it is the key."""
OTHER = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"


class QuotesTheKey(FakeApi):
    """An OpenAI-compatible server that answers 401 quoting the key it was sent (some proxies do)."""

    def handle(self, request: Request) -> Response:
        sent = request.headers.get("authorization", "").removeprefix("Bearer ")
        message = f"Incorrect API key provided: {sent}. Header was 'Bearer {sent}'; also tried {OTHER}"
        return 401, {}, {"error": {"message": message, "type": "invalid_request_error", "code": sent}}


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        pending += [current.__cause__, current.__context__]
    return found


def _assert_clean(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    texts = [str(exc), "".join(traceback.format_exception(exc))]
    for linked in _chain(exc):
        texts += [str(linked), repr(linked.args)]
        texts += [repr(value) for value in vars(linked).values() if isinstance(value, str | dict | list)]
    with caplog.at_level(logging.ERROR):
        logging.getLogger("contentforge.test").error("moderation failed", exc_info=exc)
    texts.append(caplog.text)
    for text in texts:
        assert KEY not in text and OTHER not in text, text


def test_a_moderation_401_quoting_the_key_never_carries_it(caplog: pytest.LogCaptureFixture) -> None:
    with serve(QuotesTheKey()) as api:
        backend = OpenAIModerationBackend(SecretStr(KEY), base_url=f"{api.url}/v1", max_retries=0)
        with pytest.raises(ModerationUnavailable) as raised:
            backend.scores(ModerationInput(image=None, texts=("a caption",)))
    assert api.requests[0].headers["authorization"] == f"Bearer {KEY}", "the key was sent, and quoted"
    assert "HTTP 401" in str(raised.value)
    cause = raised.value.__cause__
    assert cause is not None and REDACTED in str(cause), "the cause is kept, redacted"
    _assert_clean(raised.value, caplog)


def test_a_text_provider_401_quoting_the_key_never_carries_it(caplog: pytest.LogCaptureFixture) -> None:
    with serve(QuotesTheKey()) as api:
        provider = OpenAIProvider(
            api_key=SecretStr(KEY), model="gpt-test", base_url=f"{api.url}/v1", max_attempts=1
        )
        with pytest.raises(ProviderAuthError) as raised:
            provider.generate("hello")
    _assert_clean(raised.value, caplog)


def test_redact_text_and_values() -> None:
    text = f"key {KEY}, header Bearer abc.def-123456, {OTHER}, hf_{'a' * 24}, r8_{'b' * 30}"
    assert redact_text(text, [SecretStr(KEY)]) == (
        f"key {REDACTED}, header {REDACTED}, {REDACTED}, {REDACTED}, {REDACTED}"
    )
    assert redact_text("max_tokens=5 and short key abc", ["abc"]) == "max_tokens=5 and short key abc"
    value = {"api_key": "x", "max_tokens": 5, "nested": [f"uses {KEY}"], "token": None}
    assert redact(value, [KEY]) == {
        "api_key": REDACTED,
        "max_tokens": 5,
        "nested": [f"uses {REDACTED}"],
        "token": None,
    }


def test_redact_exception_rewrites_the_whole_chain() -> None:
    class SdkError(Exception):
        def __init__(self, message: str, body: dict[str, object]) -> None:
            super().__init__(message)
            self.message = message
            self.body = body

    try:
        try:
            raise SdkError(f"401: {KEY}", {"error": {"message": f"bad key {KEY}"}})
        except SdkError as inner:
            inner.add_note(f"sent Bearer {KEY}")
            raise RuntimeError(f"wrapped ({OTHER})") from inner
    except RuntimeError as outer:
        redact_exception(outer, [KEY])
        caught = outer
    text = "".join(traceback.format_exception(caught))
    assert KEY not in text and OTHER not in text
    inner_error = caught.__cause__
    assert isinstance(inner_error, SdkError)
    assert inner_error.message == f"401: {REDACTED}"
    assert inner_error.body == {"error": {"message": f"bad key {REDACTED}"}}
