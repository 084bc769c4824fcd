"""Answers kept per ``Idempotency-Key`` for requests that run a (possibly paid) model inside the request.

A client whose connection dropped after ``/content/hooks`` answered cannot know whether the model was
called; retrying with the same ``Idempotency-Key`` and body gets the first answer back without a
second call, so the retry is neither paid nor charged twice. The same key with another body is
refused (422 ``idempotency_key_reused``), as for batch launches.

Kept in this process's memory, per token identity and endpoint, for ``ttl_s`` (a day) and at most
``max_entries`` answers (least recently used dropped first). After a restart, or on another API
process, a retry runs the model again: it is then paid again and charged again, which is what the
ledger must say.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from typing import Any

from starlette.datastructures import State

from contentforge_api.errors import ApiError

_INIT_LOCK = threading.Lock()


class ReplayCache:
    def __init__(self, *, ttl_s: float = 86_400.0, max_entries: int = 1024) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str, str], tuple[float, str, Any]] = OrderedDict()

    @staticmethod
    def fingerprint(body: Any) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, scope: tuple[str, str, str], fingerprint: str) -> Any | None:
        """The kept answer for ``scope`` (identity, endpoint, key), or None; a different body is a 422."""
        with self._lock:
            entry = self._entries.get(scope)
            if entry is None:
                return None
            stored_at, kept_fingerprint, answer = entry
            if time.monotonic() - stored_at > self.ttl_s:
                del self._entries[scope]
                return None
            self._entries.move_to_end(scope)
        if kept_fingerprint != fingerprint:
            raise ApiError(
                422,
                "this Idempotency-Key was already used with a different request; send a new key for a new "
                "request (the same key and body return the first answer)",
                code="idempotency_key_reused",
            )
        return answer

    def put(self, scope: tuple[str, str, str], fingerprint: str, answer: Any) -> None:
        with self._lock:
            self._entries[scope] = (time.monotonic(), fingerprint, answer)
            self._entries.move_to_end(scope)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def replay_cache(app_state: State) -> ReplayCache:
    """The app's cache, made on first use."""
    with _INIT_LOCK:
        cache = getattr(app_state, "contentforge_replays", None)
        if cache is None:
            cache = ReplayCache()
            app_state.contentforge_replays = cache
        return cache
