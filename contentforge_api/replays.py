"""``Idempotency-Key`` on requests that call a (possibly paid) model or start a job, kept in the database.

A client whose connection dropped after ``/content/hooks`` answered, or after a chain step's 202,
cannot know whether the work was done; retrying with the same ``Idempotency-Key`` and body gets the
first answer back without a second model call or a second flow run, so the retry is neither paid
nor charged twice. The entry is taken in the database (``contentforge.db.idempotency``) *before*
the work starts, so it holds across API processes and restarts:

* two concurrent requests with one key: one does the work; the other waits up to
  ``api_idempotency_wait_s`` for its answer, then gets 409 ``idempotency_key_in_progress`` (with
  ``Retry-After``): it never does the work a second time;
* the same key with another body: 422 ``idempotency_key_reused`` (the IETF draft's answer);
* the work failed: the key is given up, so a retry does the work;
* keys belong to the token identity that sent them and are forgotten after
  ``api_idempotency_ttl_s`` (a day by default).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from starlette.datastructures import State
from starlette.requests import Request

from contentforge.db.idempotency import (
    Claim,
    Claimed,
    IdempotencyStore,
    InProgress,
    KeyScope,
    Mismatch,
    Replay,
)
from contentforge_api.auth import Identity
from contentforge_api.errors import ApiError

T = TypeVar("T")
log = logging.getLogger(__name__)
PENDING_LEASE = timedelta(minutes=5)
"""How long after its last renewal a request's claim counts as abandoned (its process died), so that a
retry may take the key over. A request renews it every ``RENEW_EVERY`` while its work runs, so slow
work (a local model taking minutes, with retries) is never done twice."""
RENEW_EVERY = PENDING_LEASE / 5
PURGE_EVERY_S = 3600.0
POLL_S = 0.1
_INIT_LOCK = threading.Lock()


def request_fingerprint(body: Any) -> str:
    """SHA-256 of the request body as JSON with sorted keys (defaults filled in by the schema)."""
    canonical = json.dumps(jsonable_encoder(body), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Replays:
    """The API's idempotent requests: claim the key, do the work once, keep its answer."""

    def __init__(
        self,
        store: IdempotencyStore,
        *,
        ttl_s: float,
        wait_s: float,
        lease: timedelta = PENDING_LEASE,
    ) -> None:
        self.store = store
        self.ttl = timedelta(seconds=ttl_s)
        self.wait_s = wait_s
        self.lease = lease
        self._purged_at: float | None = None

    @staticmethod
    def scope(request: Request, identity: Identity, key: str) -> KeyScope:
        return KeyScope(identity.name, f"{request.method} {request.url.path}", key)

    def _claim(self, scope: KeyScope, fingerprint: str) -> Claim:
        if self._purged_at is None or time.monotonic() - self._purged_at > PURGE_EVERY_S:
            self._purged_at = time.monotonic()
            self.store.purge_expired()
        return self.store.claim(scope, fingerprint, ttl=self.ttl, lease=self.lease)

    def run(self, scope: KeyScope, body: Any, answer: Callable[[], T], *, status: int = 200) -> T | Any:
        """``answer()`` once per key and body; a retry gets the kept answer (JSON) instead."""
        fingerprint = request_fingerprint(body)
        deadline = time.monotonic() + self.wait_s
        while True:
            claim = self._claim(scope, fingerprint)
            if not isinstance(claim, InProgress) or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        if not isinstance(claim, Claimed):
            return _kept(claim)
        done = self._kept_alive(scope, claim.holder)
        try:
            fresh = answer()
        except BaseException:
            self.store.release(scope, claim.holder)
            raise
        finally:
            done.set()
        self._settle(scope, claim.holder, status, jsonable_encoder(fresh))
        return fresh

    def _kept_alive(self, scope: KeyScope, holder: str) -> threading.Event:
        """Start renewing the claim's lease; setting the returned event stops it."""
        done = threading.Event()
        threading.Thread(
            target=self._keep_alive, args=(scope, holder, done), name="idempotency-lease", daemon=True
        ).start()
        return done

    def _keep_alive(self, scope: KeyScope, holder: str, done: threading.Event) -> None:
        """Renew the claim's lease until the work is done (a thread of its own: the work may block)."""
        while not done.wait(RENEW_EVERY.total_seconds()):
            try:
                if not self.store.renew(scope, holder, self.lease):
                    return
            except Exception as exc:  # a database hiccup: the next round tries again, the lease still runs
                # The class only: a driver's message may quote the statement and its parameters.
                log.warning("could not renew the lease of an Idempotency-Key entry: %s", type(exc).__name__)

    def _settle(self, scope: KeyScope, holder: str, status: int, body: Any) -> None:
        if not self.store.settle(scope, holder, status, body):
            # Only possible if the lease ran out while the work ran (renewals failed): say so.
            log.warning(
                "an Idempotency-Key entry was taken over before its answer was kept (%s)", scope.endpoint
            )

    async def arun(
        self, scope: KeyScope, body: Any, answer: Callable[[], Awaitable[T]], *, status: int = 200
    ) -> T | Any:
        """``run`` for async work (a flow run started through Prefect's async client)."""
        fingerprint = request_fingerprint(body)
        deadline = time.monotonic() + self.wait_s
        while True:
            claim = await run_in_threadpool(self._claim, scope, fingerprint)
            if not isinstance(claim, InProgress) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_S)
        if not isinstance(claim, Claimed):
            return _kept(claim)
        done = self._kept_alive(scope, claim.holder)
        try:
            fresh = await answer()
        except BaseException:
            await run_in_threadpool(self.store.release, scope, claim.holder)
            raise
        finally:
            done.set()
        await run_in_threadpool(self._settle, scope, claim.holder, status, jsonable_encoder(fresh))
        return fresh


def _kept(claim: Replay | InProgress | Mismatch) -> Any:
    if isinstance(claim, Replay):
        return claim.body
    if isinstance(claim, Mismatch):
        raise ApiError(
            422,
            "this Idempotency-Key was already used with a different request; send a new key for a new "
            "request (the same key and body return the first answer)",
            code="idempotency_key_reused",
        )
    raise ApiError(
        409,
        "a request with this Idempotency-Key is still being answered; retry it shortly with the same "
        "key and body to get its answer",
        code="idempotency_key_in_progress",
        headers={"Retry-After": "1"},
    )


def replays(app_state: State) -> Replays:
    """The app's idempotent-request keeper, made on first use on the app's database."""
    with _INIT_LOCK:
        kept = getattr(app_state, "contentforge_replays", None)
        if kept is None:
            api = app_state.contentforge
            settings = api.settings
            kept = Replays(
                IdempotencyStore(api.services.sessions),
                ttl_s=settings.api_idempotency_ttl_s,
                wait_s=settings.api_idempotency_wait_s,
            )
            app_state.contentforge_replays = kept
        return kept


IN_PROGRESS = (
    "Another request with this Idempotency-Key is still being answered (`idempotency_key_in_progress`, "
    "with `Retry-After`): retry with the same key and body for its answer."
)
"""The 409 description of routes that take an ``Idempotency-Key``."""
