"""A new Prefect queue service can start while Prefect's global loop looks another one up.

The deadlock ``tasks/prefect_services.py`` removes, replayed step by step: a thread starts a new
concurrency-lease service (as a GPU worker's first run of a new batch does) and, while it holds its
class's start-up lock, the global event loop asks for the events worker's (as the task worker does when
it emits an event). With one lock shared by all classes the loop waits for the thread, which waits for
the loop; the loop's wait is bounded here so a failing test ends.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import tasks  # noqa: F401  (applies the fix, as every ContentForge process importing a task does)


def test_a_service_starting_in_a_thread_does_not_block_the_global_loop_looking_up_another(
    prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect._internal.concurrency.api import create_call, from_sync
    from prefect.concurrency.services import ConcurrencySlotAcquisitionWithLeaseService
    from prefect.events.worker import EventsWorker

    creating = threading.Event()
    original_init = ConcurrencySlotAcquisitionWithLeaseService.__init__

    def slow_init(self: Any, *args: Any) -> None:
        creating.set()  # the thread now holds the lease services' start-up lock
        time.sleep(0.3)  # long enough for the loop to be asking for the other lock
        original_init(self, *args)

    monkeypatch.setattr(ConcurrencySlotAcquisitionWithLeaseService, "__init__", slow_init)

    def look_up_events_worker_on_the_loop() -> bool:
        creating.wait(5)
        lock = EventsWorker._instance_lock  # what EventsWorker.instance() takes first
        acquired = lock.acquire(timeout=3)
        if acquired:
            lock.release()
        return acquired

    on_loop = from_sync.call_soon_in_loop_thread(create_call(look_up_events_worker_on_the_loop))
    started = time.monotonic()
    service = ConcurrencySlotAcquisitionWithLeaseService.instance(frozenset({"tag:deadlock-test"}))
    created_after_s = time.monotonic() - started
    try:
        assert on_loop.result(timeout=10) is True, "the global loop waited for the lease service's start"
        assert created_after_s < 2.5, f"the new service started only after {created_after_s:.1f} s"
    finally:
        service.drain()
