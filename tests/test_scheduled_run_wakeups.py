"""A worker asks for runs when a Scheduled event arrives: bursts coalesce, and a failed ask or a broken
event stream never ends the worker (its poll remains). The end-to-end start is in
``tests/test_preloaded_worker.py``."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from contentforge_cli import scheduled_run_wakeups
from contentforge_cli.scheduled_run_wakeups import Wakeups, submit_when_scheduled


class CountingWorker:
    """Counts asks; the first ``failures`` asks raise, as an unreachable server would."""

    def __init__(self, failures: int = 0, ask_s: float = 0.0) -> None:
        self.asks = 0
        self.failures = failures
        self.ask_s = ask_s

    async def get_and_submit_flow_runs(self) -> list[Any]:
        self.asks += 1
        await anyio.sleep(self.ask_s)
        if self.asks <= self.failures:
            raise RuntimeError("server unreachable")
        return []


def test_events_during_an_ask_make_exactly_one_more_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    async def burst(pool_name: str, wakeups: Wakeups, retry_s: float) -> None:
        """One event, then five while the ask it started runs."""
        wakeups.ring()
        await anyio.sleep(0.05)
        for _ in range(5):
            wakeups.ring()
        await anyio.sleep_forever()

    monkeypatch.setattr(scheduled_run_wakeups, "_listen", burst)

    async def scenario(worker: CountingWorker) -> None:
        with anyio.move_on_after(1.0):
            await submit_when_scheduled(worker, "a-pool")

    worker = CountingWorker(ask_s=0.2)
    anyio.run(scenario, worker)
    assert worker.asks == 2


def test_a_failed_ask_and_a_broken_event_stream_leave_the_worker_asking(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.exceptions import ObjectNotFound

    streams = 0
    lookups = 0

    async def pool_id(pool_name: str) -> str:
        """Absent at first, as a pool the worker is about to create."""
        nonlocal lookups
        lookups += 1
        if lookups == 1:
            raise ObjectNotFound(http_exc=Exception("no such pool yet"))
        return "0f0f0f0f-0000-0000-0000-000000000000"

    class BrokenThenRingingSubscriber:
        """The first stream fails to open; each later one delivers one event and ends."""

        async def __aenter__(self) -> BrokenThenRingingSubscriber:
            nonlocal streams
            streams += 1
            if streams == 1:
                raise ConnectionRefusedError("events are down")
            return self

        async def __aexit__(self, *exc_info: object) -> None:
            return None

        def __aiter__(self) -> BrokenThenRingingSubscriber:
            self.delivered = False
            return self

        async def __anext__(self) -> str:
            if self.delivered:
                raise StopAsyncIteration
            self.delivered = True
            return "prefect.flow-run.Scheduled"

    monkeypatch.setattr(scheduled_run_wakeups, "_pool_id", pool_id)
    monkeypatch.setattr(scheduled_run_wakeups, "POOL_RETRY_S", 0.05)
    monkeypatch.setattr(
        "prefect.events.clients.get_events_subscriber", lambda **kwargs: BrokenThenRingingSubscriber()
    )

    async def scenario(worker: CountingWorker) -> None:
        with anyio.move_on_after(1.0):
            await submit_when_scheduled(worker, "a-pool", retry_s=0.05)

    worker = CountingWorker(failures=1)
    anyio.run(scenario, worker)
    assert streams >= 3, "the stream is opened again after it failed or ended"
    assert worker.asks >= 2, "asks go on after one failed"
    assert lookups >= 2, "a pool not created yet is looked up again"
    assert caplog.text.count("the event stream for pool a-pool is unavailable") == 1, "once per outage"
    assert "no such pool yet" not in caplog.text, "an absent pool is not an outage"
    assert "asking for runs after a Scheduled event failed: server unreachable" in caplog.text


def test_the_wait_after_failures_in_a_row_doubles_up_to_a_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that refuses the event stream for good is not asked every few seconds forever."""
    waits: list[float] = []

    async def pool_id(pool_name: str) -> str:
        raise ConnectionRefusedError("events are down")

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 10:
            raise anyio.get_cancelled_exc_class()()

    monkeypatch.setattr(scheduled_run_wakeups, "_pool_id", pool_id)
    monkeypatch.setattr(scheduled_run_wakeups.anyio, "sleep", sleep)

    async def scenario() -> None:
        with pytest.raises(anyio.get_cancelled_exc_class()):
            await scheduled_run_wakeups._listen("a-pool", Wakeups(), retry_s=5.0)

    anyio.run(scenario)
    assert waits == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0, 300.0]
