"""Secret hygiene in one place: redact keys and tokens from text, JSON-like values and exceptions.

Three kinds of secret are removed:

* values the caller knows (the configured API key or token): every occurrence, anywhere;
* API-key shapes in free text: ``sk-…`` (OpenAI, Anthropic), ``hf_…`` (Hugging Face), ``r8_…``
  (Replicate) and ``Bearer …`` headers;
* in JSON-like values, everything under a key whose name says secret (``api_key``, ``token``…).

``redact_exception`` is for provider boundaries: an upstream that quotes the key in its error body
(an OpenAI-compatible server answering 401 with "invalid key sk-…") would otherwise carry it through
the exception's message, its ``args``, its attributes and its chained causes into the CLI's output,
tracebacks and Prefect's log table. It rewrites the whole chain in place before anything logs it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import SecretBytes, SecretStr

REDACTED = "[redacted]"
SECRET_NAME = re.compile(
    r"api_?key|apikey|secret|passw(or)?d|authori[sz]ation|credential|access_?key|private_?key"
    r"|(^|[_.-])(token|auth)($|[_.-])",
    re.IGNORECASE,
)
"""Key names whose values are never stored; ``max_tokens`` and the like do not match."""
SECRET_VALUE = re.compile(
    r"\b(sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,}|r8_[A-Za-z0-9]{20,}|Bearer\s+[A-Za-z0-9._~+/=-]{8,})"
)
"""API-key shapes (OpenAI/Anthropic ``sk-``, Hugging Face ``hf_``, Replicate ``r8_``, bearer headers)."""
MIN_SECRET_CHARS = 4
"""Known secrets shorter than this are not replaced (they would blank out ordinary words)."""

Secret = str | SecretStr | SecretBytes | None
E = TypeVar("E", bound=BaseException)


def _values(secrets: Iterable[Secret]) -> list[str]:
    values: list[str] = []
    for secret in secrets:
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        elif isinstance(secret, SecretBytes):
            secret = secret.get_secret_value().decode("utf-8", "replace")
        if secret and len(secret) >= MIN_SECRET_CHARS:
            values.append(secret)
    return sorted(set(values), key=len, reverse=True)  # longest first: a key containing another


def redact_text(text: str, secrets: Iterable[Secret] = ()) -> str:
    """``text`` with every known secret and every API-key shape replaced by ``[redacted]``."""
    for value in _values(secrets):
        text = text.replace(value, REDACTED)
    return SECRET_VALUE.sub(REDACTED, text)


def redact(value: Any, secrets: Iterable[Secret] = ()) -> Any:
    """A copy of a JSON-like value with secrets replaced, by key name, type, known value or shape."""
    known = _values(secrets)
    return _redact(value, known)


def _redact(value: Any, known: list[str]) -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED if SECRET_NAME.search(str(key)) and item is not None else _redact(item, known)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item, known) for item in value]
    if isinstance(value, str):
        return redact_text(value, known)
    return value


def redact_exception(exc: E, secrets: Iterable[Secret] = ()) -> E:
    """``exc`` and every exception chained to it, rewritten in place so that no secret survives.

    For each exception of the chain (``__cause__``, ``__context__``, groups' members): string ``args``,
    string and JSON-like attributes (an SDK's ``message``, ``body``, ``detail``) and ``__notes__`` are
    redacted. Attributes that are not plain data (an httpx response) are left alone: tracebacks and
    log handlers print ``str(exc)``, which comes from ``args`` or those data attributes. Returns ``exc``.
    """
    known = _values(secrets)
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        _redact_one(current, known)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
    return exc


def _redact_one(exc: BaseException, known: list[str]) -> None:
    with contextlib.suppress(AttributeError, TypeError):
        exc.args = tuple(
            _redact(arg, known) if isinstance(arg, str | Mapping | list | tuple) else arg for arg in exc.args
        )
    for name, attribute in list(getattr(exc, "__dict__", {}).items()):
        if name == "__notes__" and isinstance(attribute, list):
            cleaned: Any = [redact_text(note, known) if isinstance(note, str) else note for note in attribute]
        elif isinstance(attribute, str | Mapping | list | tuple):
            cleaned = _redact(attribute, known)
            if isinstance(attribute, tuple):
                cleaned = tuple(cleaned)
        else:
            continue
        if cleaned != attribute:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, name, cleaned)
