"""HTTP plumbing shared by the API publishers: one client, error classification, secret hygiene.

Tokens travel only in the ``Authorization`` header, never in URLs, so they cannot leak through
httpx's logs or exception texts; response excerpts quoted in errors are scrubbed of them too.

A client built without an ``httpx.Client`` still goes through the outbound policy (public addresses
only, each request resolved once and pinned): a caller that forgets to pass a policy client must not
be the one path by which a bearer token reaches an internal host.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from pydantic import SecretStr

from contentforge import retry_after
from contentforge.config import ALLOW_ALL
from contentforge.outbound import OPT_IN_VARIABLE, OutboundPolicy, OutboundRefused, allowed_private
from contentforge.publishing.protocol import PermanentFailure, RateLimited, TransientError
from contentforge.redaction import redact_text

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MAX_EXCERPT = 300


def scrub(text: str, secrets: Iterable[SecretStr | None]) -> str:
    """``text`` with every secret value and API-key shape replaced, cut to a readable length."""
    return redact_text(text, secrets)[:MAX_EXCERPT]


def retry_after_seconds(response: httpx.Response, default: float = 60.0) -> float:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``x-rate-limit-reset`` (epoch)."""
    from_header = retry_after.retry_after_seconds(response.headers.get("retry-after"))
    if from_header is not None:
        return from_header
    reset = response.headers.get("x-rate-limit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    return default


def default_policy(service: str, setting: str | None = None) -> OutboundPolicy:
    """The outbound policy of a client built without one: URL setting ``setting``'s, else public only.

    Without a setting name only ``CONTENTFORGE_ALLOW_PRIVATE_URLS=*`` opts a private address in, as no
    narrower opt-in could name this destination.
    """
    if setting is not None:
        return OutboundPolicy.for_setting(setting)
    return OutboundPolicy(
        setting=f"{service} API URL",
        allow_private=ALLOW_ALL in allowed_private(None),
        opt_in=f"{OPT_IN_VARIABLE}=*",
    )


class ApiClient:
    """A small wrapper over ``httpx.Client`` that turns transport failures into typed errors.

    ``client`` defaults to a pinned client of ``default_policy(service, setting)``.
    """

    def __init__(
        self,
        base_url: str,
        token: SecretStr | None,
        *,
        service: str,
        client: httpx.Client | None = None,
        setting: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.service = service
        self.sleep = sleep
        self._client = client or default_policy(service, setting).client(timeout=DEFAULT_TIMEOUT)

    def _headers(self) -> dict[str, str]:
        if self.token is None:
            return {}
        return {"Authorization": f"Bearer {self.token.get_secret_value()}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        try:
            return self._client.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise TransientError(f"{self.service}: {method} {path} failed: {type(exc).__name__}") from None
        except OutboundRefused as exc:  # the outbound URL policy refused the address: retrying cannot help
            raise PermanentFailure(f"{self.service}: {method} refused: {exc}") from None

    def excerpt(self, response: httpx.Response) -> str:
        return scrub(response.text, [self.token])

    def raise_for_status(self, response: httpx.Response, what: str) -> None:
        """Typed error for a non-2xx answer: 429 → RateLimited, 5xx → Transient, other 4xx → Permanent."""
        if response.is_success:
            return
        status = response.status_code
        message = f"{self.service}: {what} answered HTTP {status}: {self.excerpt(response)}"
        if status == 429:
            raise RateLimited.after(message, retry_after_seconds(response))
        if status >= 500 or status == 408:
            raise TransientError(message)
        raise PermanentFailure(message)

    def json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise TransientError(
                f"{self.service}: {what} returned no JSON: {self.excerpt(response)}"
            ) from None
        if not isinstance(body, dict):
            raise TransientError(f"{self.service}: {what} returned unexpected JSON: {self.excerpt(response)}")
        return body

    def close(self) -> None:
        self._client.close()
