"""The Prefect server's lease API for one global concurrency limit, as the slot dispatcher calls it.

Why not the client's methods as they are: Prefect's HTTP client answers a 503 by sleeping 2 s (then 4,
8, ...) before trying again, and sleeps once more even when told to make no retry. Under load the
Prefect server's SQLite database answers many lease writes with 503 ("database is locked"), so every
hand-off of a slot between processes took seconds while the slot idled, and a high-priority
generation waited for those seconds. Here an acquisition or a release is
one attempt: the dispatcher asks again after its own poll (a fraction of a second) and gives up only
after its ``busy_budget_s``.

One attempt means sending through the Prefect client's own HTTP session (its base URL, auth, TLS and
API-version headers) without its retrying ``send``. A server with CSRF protection on refuses such a
call (403); the client's public methods, which fetch the tokens, are then used for every call (with
their back-off).
"""

from __future__ import annotations

from typing import Any

import httpx
from prefect.client.orchestration import SyncPrefectClient

TRANSIENT_STATUS = frozenset({408, 429, 502, 503, 504})
"""Answers that say "ask again shortly": the server's database was locked (503), a proxy hiccup."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call may well succeed if made again shortly."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in TRANSIENT_STATUS
    return isinstance(exc, httpx.TransportError)


def retry_after(exc: BaseException) -> float | None:
    """Retry-After seconds if ``exc`` is the server's 423 "limit full" answer, else None."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423:
            return float(cause.response.headers.get("Retry-After", "1"))
        cause = cause.__cause__
    return None


class SlotLeases:
    """Acquire, renew and release leases on the slots of ``limit_name`` through ``client``."""

    def __init__(self, client: SyncPrefectClient, limit_name: str, lease_s: float) -> None:
        self._client = client
        self.limit_name = limit_name
        self.lease_s = lease_s
        self._csrf = False
        """Whether the server wants CSRF tokens (it answered a bare call 403): then the public methods."""

    def acquire(self) -> Any:
        """A lease on one slot; ``httpx.HTTPStatusError`` 423 when the limit is full (``retry_after``).

        ``LookupError`` if the limit does not exist: a missing limit must never mean "run unlimited".
        """
        response = self._once(
            "/v2/concurrency_limits/increment-with-lease",
            {"names": [self.limit_name], "slots": 1, "mode": "concurrency", "lease_duration": self.lease_s},
        )
        if response is None:
            response = self._client.increment_concurrency_slots_with_lease(
                names=[self.limit_name], slots=1, mode="concurrency", lease_duration=self.lease_s
            )
        granted = response.json()
        if not granted.get("limits"):
            raise LookupError(
                f"global concurrency limit {self.limit_name!r} must be created before use "
                "(run `contentforge bootstrap`)"
            )
        return granted["lease_id"]

    def renew(self, lease_id: Any) -> None:
        """Extend the lease by ``lease_s`` (the client's own retries are fine here: nothing waits on it)."""
        self._client.renew_concurrency_lease(lease_id, self.lease_s)

    def release(self, lease_id: Any) -> None:
        """Give the slot back, in one attempt."""
        if self._once("/v2/concurrency_limits/decrement-with-lease", {"lease_id": str(lease_id)}) is None:
            self._client.release_concurrency_slots_with_lease(lease_id)

    def _once(self, path: str, body: dict[str, Any]) -> httpx.Response | None:
        """POST through the client's HTTP session in one attempt; None where only the public methods
        will do (the server wants CSRF tokens, or the client is not the expected httpx session)."""
        http = getattr(self._client, "_client", None)
        if self._csrf or not isinstance(http, httpx.Client):
            return None
        response = httpx.Client.send(http, http.build_request("POST", path, json=body))  # no back-off
        if response.status_code == 403 and "csrf" in response.text.lower():
            self._csrf = True
            return None
        response.raise_for_status()
        return response
