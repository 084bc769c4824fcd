"""Typed errors of the text providers, mapped from the vendors' SDK exceptions.

Messages name the provider and what to do next; they never contain an API key: every message a
provider builds from a vendor response goes through ``scrub`` with the provider's secrets, and the
vendor's exception is redacted (``contentforge.redaction.redact_exception``) before it is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

from contentforge.errors import ContentForgeError
from contentforge.redaction import REDACTED as REDACTED
from contentforge.redaction import redact_text
from contentforge.retry_after import retry_after_seconds


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with the provider's secrets and any API-key shape replaced (``contentforge.redaction``)."""
    return redact_text(text, secrets)


class ProviderError(ContentForgeError):
    """A text provider could not answer; ``provider`` names which one."""

    retryable: bool = False
    """Whether the same provider may succeed if asked again after a wait."""

    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class ProviderRateLimited(ProviderError):
    """HTTP 429: too many requests; ``retry_after`` is the server's hint in seconds, if it gave one."""

    retryable = True

    def __init__(self, message: str, *, provider: str, retry_after: float | None = None) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    """The request took longer than ``CONTENTFORGE_TEXT_TIMEOUT_S``."""

    retryable = True


class ProviderAuthError(ProviderError):
    """HTTP 401/403: the key is wrong, revoked or lacks access; fix the key, retrying will not help."""


class ProviderUnavailable(ProviderError):
    """The provider cannot answer now: connection refused, 5xx (retryable) or a rejected request."""

    def __init__(self, message: str, *, provider: str, retryable: bool = False) -> None:
        super().__init__(message, provider=provider)
        self.retryable = retryable


class ProviderCannotAnswer(ProviderError):
    """The provider has no way to answer this kind of request (the offline engine for an unknown schema)."""


class InvalidModelOutput(ProviderError):
    """The model's answer is not valid for the requested schema, even after one repair attempt."""

    def __init__(self, message: str, *, provider: str, output: str = "", spent: object = None) -> None:
        super().__init__(message, provider=provider)
        self.output = output[:2000]
        self.spent = spent
        """The ``TextResult`` summing the calls that were paid for, so the cost can still be recorded."""


class NoProviderAvailable(ContentForgeError):
    """No provider of the chain could run or answer; ``failures`` lists (provider, reason) in order."""

    def __init__(self, message: str, failures: Iterable[tuple[str, str]] = ()) -> None:
        self.failures = list(failures)
        details = "; ".join(f"{name}: {reason}" for name, reason in self.failures)
        super().__init__(f"{message}" + (f" ({details})" if details else ""))


def parse_retry_after(headers: object) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    if (ms := get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    return retry_after_seconds(get("retry-after"))


def error_for_status(
    status: int, message: str, *, provider: str, retry_after: float | None = None
) -> ProviderError:
    """The typed error for an HTTP error status of a provider's API."""
    if status == 429:
        return ProviderRateLimited(
            f"rate limited (HTTP 429): {message}", provider=provider, retry_after=retry_after
        )
    if status in (401, 403):
        return ProviderAuthError(
            f"authentication failed (HTTP {status}): {message}; check the API key", provider=provider
        )
    if status in (408, 504):
        return ProviderTimeout(f"timed out (HTTP {status}): {message}", provider=provider)
    if status >= 500:
        return ProviderUnavailable(
            f"server error (HTTP {status}): {message}", provider=provider, retryable=True
        )
    return ProviderUnavailable(f"request rejected (HTTP {status}): {message}", provider=provider)
