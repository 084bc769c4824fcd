"""Keep the global ``image-generation`` slots busy without flooding the Prefect server.

Why this exists: when 50 tasks each block on ``concurrency("image-generation")``, every refused
client sleeps for the server's Retry-After (up to 30 s, grown by the average slot occupancy), so
slots sit free while work waits; measured here, ~20% utilization behind a limit of 5.

Instead, each process runs at most ``max_slots`` *slot holders*. A holder acquires one slot of the
global limit (``strict=True``, so a missing limit is an error, never silently ignored) and then runs
queued generations back to back inside that slot, releasing it once the local queue has been empty
for ``linger_s``. Every generation still runs inside a slot of the global limit, so across all
processes and workers at most ``limit`` generations run at once; but a slot changes hands locally
in microseconds, and only holders (never individual pieces) talk to the server. A holder refused by
the server (other processes hold the slots) retries after ``min(Retry-After, poll_s)`` with jitter,
so at most ``max_slots`` bounded pollers per process exist.

Holders run in a fresh ``contextvars`` context that carries only Prefect's settings. They must not
inherit the context of the task run that happened to spawn them: Prefect records every lease taken
inside a task run and revokes it when that task run ends, which would free the server-side slot
while the holder is still generating (measured: peak 10 behind a limit of 5 across two processes).
"""

from __future__ import annotations

import contextvars
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import httpx
from prefect.concurrency.sync import concurrency
from prefect.context import SettingsContext, get_settings_context

T = TypeVar("T")
logger = logging.getLogger(__name__)


def _retry_after(exc: BaseException) -> float | None:
    """Retry-After seconds if ``exc`` is the server's 423 "limit full" answer, else None."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423:
            return float(cause.response.headers.get("Retry-After", "1"))
        cause = cause.__cause__
    return None


class _DropRefusedAcquisitions(logging.Filter):
    """Drop Prefect's ERROR line for each acquisition the server refused with 423 "limit full".

    A refused acquisition is the normal answer to a holder's poll and is handled above; logging it as
    an error would print one alarming line per poll.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        item = args[1] if len(args) > 1 else None
        future = item[-1] if isinstance(item, tuple) and item else None
        if isinstance(future, Future) and future.done() and not future.cancelled():
            exc = future.exception()
            if exc is not None and _retry_after(exc) is not None:
                return False
        return True


logging.getLogger("prefect._internal.concurrency").addFilter(_DropRefusedAcquisitions())


class SlotDispatcher:
    """Runs callables inside slots of a Prefect global concurrency limit, keeping held slots busy."""

    def __init__(self, limit_name: str, max_slots: int, linger_s: float = 0.25, poll_s: float = 0.5) -> None:
        self.limit_name = limit_name
        self.max_slots = max_slots
        self.linger_s = linger_s
        self.poll_s = poll_s
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._holders = 0
        self._idle_holders = 0
        self._pending = 0
        self.leases_taken = 0
        """How many slots were acquired from the server; far fewer than the work items when busy."""

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn`` to run inside a slot; the future resolves with its result or exception."""
        future: Future[T] = Future()
        with self._lock:
            self._pending += 1
            self._work.put((future, fn))
            spawn = self._holders < self.max_slots and self._pending > self._idle_holders
            if spawn:
                self._holders += 1
        if spawn:
            settings = get_settings_context()
            threading.Thread(
                target=contextvars.Context().run,
                args=(self._hold_with_settings, settings.profile, settings.settings),
                name="slot-holder",
                daemon=True,
            ).start()
        return future

    def run(self, fn: Callable[[], T]) -> T:
        """Submit and wait."""
        return self.submit(fn).result()

    def _hold_with_settings(self, profile: Any, settings: Any) -> None:
        """Hold slots under the submitter's Prefect settings, outside any flow or task run context."""
        with SettingsContext(profile=profile, settings=settings):
            self._hold()

    def _hold(self) -> None:
        try:
            while self._has_pending():
                self._serve_one_lease()
        except Exception as exc:
            # A slot cannot be had at all (e.g. the limit does not exist): fail the waiting work
            # loudly instead of leaving it queued forever.
            logger.error("cannot acquire a slot of %r: %s", self.limit_name, exc)
            self._fail_pending(exc)
        finally:
            with self._lock:
                self._holders -= 1

    def _fail_pending(self, exc: BaseException) -> None:
        while True:
            try:
                future, _ = self._work.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                self._pending -= 1
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)

    def _has_pending(self) -> bool:
        with self._lock:
            return self._pending > 0

    def _serve_one_lease(self) -> bool:
        """Acquire one slot and drain work inside it; False if the server refused the slot."""
        entered = False
        try:
            with concurrency(self.limit_name, occupy=1, strict=True, max_retries=0):
                entered = True
                with self._lock:
                    self.leases_taken += 1
                self._drain()
            return True
        except Exception as exc:
            if entered:
                # The work ran; only the release or lease renewal failed. The lease expires by itself.
                logger.warning("releasing a slot of %r failed: %s", self.limit_name, exc)
                return True
            wait = _retry_after(exc)
            if wait is None:
                raise
            time.sleep(min(wait, self.poll_s) * random.uniform(0.5, 1.0))
            return False

    def _drain(self) -> None:
        while True:
            with self._lock:
                self._idle_holders += 1
            try:
                future, fn = self._work.get(timeout=self.linger_s)
            except queue.Empty:
                return
            finally:
                with self._lock:
                    self._idle_holders -= 1
            with self._lock:
                self._pending -= 1
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # the caller's task decides what a failure means
                future.set_exception(exc)


_dispatchers: dict[tuple[str, int], SlotDispatcher] = {}
_dispatchers_lock = threading.Lock()


def get_dispatcher(limit_name: str, max_slots: int) -> SlotDispatcher:
    """The process-wide dispatcher for a limit, shared by every batch running in this process."""
    with _dispatchers_lock:
        key = (limit_name, max_slots)
        if key not in _dispatchers:
            _dispatchers[key] = SlotDispatcher(limit_name, max_slots)
        return _dispatchers[key]
