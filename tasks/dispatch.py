"""Keep the global ``image-generation`` slots busy without flooding the Prefect server.

Why this exists: when 50 tasks each block on ``concurrency("image-generation")``, every refused
client sleeps for the server's Retry-After (up to 30 s, grown by the average slot occupancy), so
slots sit free while work waits (measured utilization: docs/benchmarks.md).

Instead, each process runs at most ``max_slots`` *slot holders*. A holder acquires one slot of the
global limit (``strict=True``, so a missing limit is an error, never silently ignored) and then runs
queued generations back to back inside that slot, releasing it once the local queue has been empty
for ``linger_s``. Every generation still runs inside a slot of the global limit, so across all
processes and workers at most ``limit`` generations run at once; but a slot changes hands locally
in microseconds, and only holders (never individual pieces) talk to the server. A holder refused by
the server (other processes hold the slots) retries after ``min(Retry-After, poll_s)`` with jitter;
only one holder per process asks at a time (the others wait for it locally), so a process adds at most
one request per ``poll_s`` however much work it has waiting, and ``poll_s`` can be short enough that a
slot freed by another process is taken again within a fraction of a second.

Holders call the server's lease API directly (increment with lease, renew, release) with their own
client. Prefect's ``concurrency()`` context manager funnels every acquisition of a process through one
queue service and ties leases to the current task run; with several processes contending for the
slots, freed slots then stayed idle for seconds (figures: docs/benchmarks.md).

Holders run in a fresh ``contextvars`` context that carries only Prefect's settings. They must not
inherit the context of the task run that happened to spawn them: Prefect records every lease taken
inside a task run and revokes it when that task run ends, which would free the server-side slot
while the holder is still generating, so more generations than the limit ran at once across
processes (see docs/benchmarks.md).
"""

from __future__ import annotations

import atexit
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
from prefect.client.orchestration import SyncPrefectClient, get_client
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


class SlotDispatcher:
    """Runs callables inside slots of a Prefect global concurrency limit, keeping held slots busy."""

    def __init__(
        self,
        limit_name: str,
        max_slots: int,
        linger_s: float = 0.25,
        poll_s: float = 0.2,
        lease_s: float = 60.0,
    ) -> None:
        self.limit_name = limit_name
        self.max_slots = max_slots
        self.linger_s = linger_s
        self.poll_s = poll_s
        self.lease_s = lease_s
        """Server-side lease of a held slot, renewed every third of it while held: a process that dies
        (killed, crashed machine) gives its slots back within this time."""
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._holders = 0
        self._idle_holders = 0
        self._pending = 0
        self.leases_taken = 0
        self._threads: list[threading.Thread] = []
        self._asking = threading.Lock()
        """Held by the one holder of this process that is asking the server for a slot."""
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
            thread = threading.Thread(
                target=contextvars.Context().run,
                args=(self._hold_with_settings, settings.profile, settings.settings),
                name="slot-holder",
                daemon=True,
            )
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
        return future

    def close(self, timeout_s: float = 30.0) -> None:
        """Wait for the holders to finish their work and give their slots back.

        Registered at interpreter exit: a process that ends while a holder lingers would otherwise
        leave its slot taken on the server until the lease expires, idling it for everyone.
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def run(self, fn: Callable[[], T]) -> T:
        """Submit and wait."""
        return self.submit(fn).result()

    def _hold_with_settings(self, profile: Any, settings: Any) -> None:
        """Hold slots under the submitter's Prefect settings, outside any flow or task run context."""
        with SettingsContext(profile=profile, settings=settings):
            self._hold()

    def _hold(self) -> None:
        try:
            with get_client(sync_client=True) as client:
                while self._has_pending():
                    self._serve_one_lease(client)
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

    def _serve_one_lease(self, client: SyncPrefectClient) -> bool:
        """Acquire one slot and drain work inside it; False if the server refused the slot."""
        with self._asking:
            if not self._has_pending():  # another holder took the last work while this one waited
                return False
            asked = time.monotonic()
            try:
                response = client.increment_concurrency_slots_with_lease(
                    names=[self.limit_name], slots=1, mode="concurrency", lease_duration=self.lease_s
                )
            except httpx.HTTPStatusError as exc:
                wait = _retry_after(exc)
                if wait is None:
                    raise
                logger.debug("%s: refused in %.3f s", self.limit_name, time.monotonic() - asked)
                time.sleep(min(wait, self.poll_s) * random.uniform(0.5, 1.0))
                return False
        logger.debug("%s: slot granted in %.3f s", self.limit_name, time.monotonic() - asked)
        body = response.json()
        if not body.get("limits"):
            # strict: a missing limit must never mean "run unlimited".
            raise LookupError(
                f"global concurrency limit {self.limit_name!r} must be created before use "
                "(run `contentforge bootstrap`)"
            )
        lease_id = body["lease_id"]
        with self._lock:
            self.leases_taken += 1
        held = threading.Event()
        renewer = threading.Thread(
            target=self._keep_lease, args=(client, lease_id, held), name="slot-lease", daemon=True
        )
        renewer.start()
        try:
            self._drain()
        finally:
            held.set()
            renewer.join()
            logger.debug("%s: releasing a slot", self.limit_name)
            try:
                client.release_concurrency_slots_with_lease(lease_id)
            except Exception as exc:  # the lease then expires by itself after lease_s
                logger.warning("releasing a slot of %r failed: %s", self.limit_name, exc)
        return True

    def _keep_lease(self, client: SyncPrefectClient, lease_id: Any, released: threading.Event) -> None:
        """Renew the lease every third of its duration until the holder releases it."""
        while not released.wait(self.lease_s / 3):
            try:
                client.renew_concurrency_lease(lease_id, self.lease_s)
            except Exception as exc:  # the next renewal may still succeed before the lease ends
                logger.warning("renewing a slot of %r failed: %s", self.limit_name, exc)

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
            logger.debug("%s: work started", self.limit_name)
            try:
                future.set_result(fn())
            except BaseException as exc:  # the caller's task decides what a failure means
                future.set_exception(exc)


_dispatchers: dict[tuple[str, int], SlotDispatcher] = {}
_dispatchers_lock = threading.Lock()


@atexit.register
def _close_dispatchers() -> None:
    for dispatcher in list(_dispatchers.values()):
        dispatcher.close()


def get_dispatcher(limit_name: str, max_slots: int, linger_s: float = 0.25) -> SlotDispatcher:
    """The process-wide dispatcher for a limit, shared by every batch running in this process.

    ``linger_s``: how long a holder keeps its slot once the local queue is empty, waiting for more work.
    Worth a quarter second where work arrives task by task (moderation, model calls); image generations
    are queued all at once (``tasks/generation_queue.py``), so their holders give a slot back almost at once.
    """
    with _dispatchers_lock:
        key = (limit_name, max_slots)
        if key not in _dispatchers:
            _dispatchers[key] = SlotDispatcher(limit_name, max_slots, linger_s=linger_s)
        return _dispatchers[key]
