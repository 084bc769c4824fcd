"""Learnings kept per account and data, so reading analytics does not mean learning again each time.

Learning an account costs seconds of CPU (the engagement model is trained), and the API's summary and
its four plots all need the same learning: without a cache one page view learned five times, and any
read-only token could keep the CPU busy. The key holds a digest of the very data learned from, so a
new or replaced snapshot (or account day) gives a new learning at once and nothing stale is served.
Concurrent requests for the same key wait for one computation instead of each starting their own.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from contentforge.domain.analytics import AccountDay, PostMetrics

T = TypeVar("T")


def data_digest(observations: Sequence[PostMetrics], days: Sequence[AccountDay]) -> str:
    """SHA-256 over every snapshot and account day (values, features, times): changes when any does."""
    digest = hashlib.sha256()
    for item in (*observations, *days):
        digest.update(repr(item).encode())
        digest.update(b"\n")
    return digest.hexdigest()


class LearningCache(Generic[T]):
    """The ``size`` most recently used results by key; one computation per key at a time."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._done: OrderedDict[Hashable, T] = OrderedDict()
        self._computing: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key]
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._done:  # another request computed it while this one waited
                    return self._done[key]
            try:
                value = compute()
            finally:
                with self._lock:
                    self._computing.pop(key, None)
            with self._lock:
                self._done[key] = value
                while len(self._done) > self.size:
                    self._done.popitem(last=False)
            return value
