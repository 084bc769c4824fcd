"""The slot dispatcher against a real Prefect server: the global limit holds and slots stay busy."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from contentforge.metrics import concurrency_figures

pytestmark = pytest.mark.slow


def _unique_limit(slots: int) -> str:
    from tasks.bootstrap import ensure_concurrency_limit

    name = f"test-limit-{uuid.uuid4().hex[:8]}"
    assert ensure_concurrency_limit(name, slots) == "created"
    assert ensure_concurrency_limit(name, slots) == "unchanged"
    return name


def _sleeper(spans: list[tuple[datetime, datetime]], seconds: float) -> None:
    start = datetime.now(UTC)
    time.sleep(seconds)
    spans.append((start, datetime.now(UTC)))


def test_peak_never_exceeds_limit_across_dispatchers(prefect_server: str) -> None:
    """Three dispatchers (as three processes would) each allowed 5 holders share a limit of 5."""
    from tasks.dispatch import SlotDispatcher

    name = _unique_limit(5)
    spans: list[tuple[datetime, datetime]] = []
    dispatchers = [SlotDispatcher(name, max_slots=5, poll_s=0.1) for _ in range(3)]
    futures = [d.submit(lambda: _sleeper(spans, 0.2)) for d in dispatchers for _ in range(15)]
    for future in futures:
        future.result(timeout=120)
    figures = concurrency_figures(spans, slots=5)
    assert figures.pieces == 45
    assert figures.peak_concurrent <= 5
    assert figures.peak_concurrent >= 4, "slots were not used in parallel"


def test_one_dispatcher_keeps_slots_busy(prefect_server: str) -> None:
    from tasks.dispatch import SlotDispatcher

    name = _unique_limit(5)
    spans: list[tuple[datetime, datetime]] = []
    dispatcher = SlotDispatcher(name, max_slots=5)
    for future in [dispatcher.submit(lambda: _sleeper(spans, 0.3)) for _ in range(25)]:
        future.result(timeout=120)
    figures = concurrency_figures(spans, slots=5)
    assert 2 <= figures.peak_concurrent <= 5, "slots were not used in parallel, or too many"
    # Slots are kept and reused: 25 generations take a handful of leases, not one each. (Utilization
    # itself is a timing figure; benchmarks/orchestration.py measures it, not this test.)
    assert dispatcher.leases_taken <= 10, dispatcher.leases_taken


def test_missing_limit_fails_instead_of_running_unlimited(prefect_server: str) -> None:
    """strict=True: a limit that does not exist is an error, never silently ignored."""
    from tasks.dispatch import SlotDispatcher

    dispatcher = SlotDispatcher(f"missing-{uuid.uuid4().hex[:8]}", max_slots=2)
    ran = threading.Event()
    futures = [dispatcher.submit(ran.set) for _ in range(3)]
    for future in futures:
        with pytest.raises(Exception, match="must be created"):
            future.result(timeout=60)
    assert not ran.is_set()


def test_work_errors_reach_the_caller_and_the_slot_is_reused(prefect_server: str) -> None:
    from tasks.dispatch import SlotDispatcher

    name = _unique_limit(1)
    dispatcher = SlotDispatcher(name, max_slots=1)

    def boom() -> None:
        raise ValueError("generation failed")

    failing = dispatcher.submit(boom)
    ok = dispatcher.submit(lambda: 42)
    with pytest.raises(ValueError, match="generation failed"):
        failing.result(timeout=60)
    assert ok.result(timeout=60) == 42


def test_a_slot_outlives_the_task_run_that_spawned_its_holder(prefect_server: str) -> None:
    """A holder spawned from a task keeps its server-side slot after that task run has finished.

    Prefect revokes leases recorded in a task run's context when the run ends; a holder that
    inherited that context lost its slot mid-work and let other processes exceed the limit.
    """
    from prefect import flow, task
    from prefect.client.orchestration import get_client

    from tasks.dispatch import SlotDispatcher

    name = _unique_limit(5)
    dispatcher = SlotDispatcher(name, max_slots=5)
    started, release = threading.Event(), threading.Event()

    def held_work() -> None:
        started.set()
        release.wait(timeout=60)

    @task
    def spawn_holder() -> None:
        dispatcher.submit(held_work)
        assert started.wait(timeout=30), "the holder never got a slot"

    @flow
    def spawn_then_finish() -> None:
        spawn_holder()

    spawn_then_finish()  # the task run (and the flow run) end here while held_work still runs
    try:
        with get_client(sync_client=True) as client:
            limit = client.read_global_concurrency_limit_by_name(name)
        assert limit.active_slots == 1, "the server freed a slot that is still in use"
    finally:
        release.set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            if client.read_global_concurrency_limit_by_name(name).active_slots == 0:
                break
        time.sleep(0.2)
    else:
        pytest.fail("the slot was never released after the work finished")


def test_the_flow_bootstrap_creates_a_missing_limit_but_keeps_an_operators_size(prefect_server: str) -> None:
    from prefect.client.orchestration import get_client

    from tasks.bootstrap import create_limit_if_absent, ensure_concurrency_limit

    name = f"test-limit-{uuid.uuid4().hex[:8]}"
    assert create_limit_if_absent(name, 5) == "created"
    assert ensure_concurrency_limit(name, 7) == "updated"  # an operator resized it
    assert create_limit_if_absent(name, 5) == "exists"
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).limit == 7


def test_a_process_that_exits_gives_its_slots_back_at_once(prefect_server: str) -> None:
    """Holders linger after the last job; an exiting process must release, not leak until lease expiry."""
    import subprocess
    import sys
    from pathlib import Path

    from prefect.client.orchestration import get_client

    name = _unique_limit(5)
    script = (
        f"import sys, time; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from tasks.dispatch import get_dispatcher\n"
        f"d = get_dispatcher({name!r}, 5)\n"
        "[f.result() for f in [d.submit(lambda: time.sleep(0.2)) for _ in range(5)]]\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).active_slots == 0


# Slot calls when the server is busy (no Prefect server: a scripted transport answers)


def _scripted_client(answers: list[tuple[int, dict[str, object]]], calls: list[str]) -> object:
    """A Prefect client whose server answers lease calls from ``answers`` in turn (the last repeats)."""
    import httpx
    from prefect.client.orchestration import SyncPrefectClient

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        return httpx.Response(status, json=body)

    return SyncPrefectClient(
        "http://prefect.test/api", httpx_settings={"transport": httpx.MockTransport(answer)}
    )


LEASE = "11111111-1111-1111-1111-111111111111"
GRANTED: tuple[int, dict[str, object]] = (200, {"limits": [{"name": "image-generation"}], "lease_id": LEASE})


def test_a_busy_server_costs_a_poll_not_the_clients_back_off() -> None:
    """Prefect's client sleeps 2 s after a 503 (even with retries off); a slot call makes one attempt."""
    from tasks.slot_leases import SlotLeases, is_transient, retry_after

    calls: list[str] = []
    client = _scripted_client([(503, {}), (423, {}), GRANTED], calls)
    leases = SlotLeases(client, "image-generation", lease_s=60)  # type: ignore[arg-type]
    began = time.monotonic()
    with pytest.raises(Exception) as busy:
        leases.acquire()
    assert is_transient(busy.value) and retry_after(busy.value) is None
    with pytest.raises(Exception) as full:
        leases.acquire()
    assert not is_transient(full.value) and retry_after(full.value) == 1.0
    assert leases.acquire() == LEASE
    leases.release(LEASE)
    assert time.monotonic() - began < 1.5, "a call slept through the client's back-off"
    assert calls == ["/api/v2/concurrency_limits/increment-with-lease"] * 3 + [
        "/api/v2/concurrency_limits/decrement-with-lease"
    ]


def test_a_server_busy_for_longer_than_the_budget_fails_the_waiting_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks import dispatch

    calls: list[str] = []
    monkeypatch.setattr(dispatch, "api_client", lambda **_: _scripted_client([(503, {})], calls))
    dispatcher = dispatch.SlotDispatcher("image-generation", max_slots=1, poll_s=0.05, busy_budget_s=0.5)
    future = dispatcher.submit(lambda: 42)
    with pytest.raises(Exception, match="503"):
        future.result(timeout=30)
    assert len(calls) >= 3, calls

    calls.clear()
    busy_twice = [(503, {}), (503, {}), GRANTED]
    monkeypatch.setattr(dispatch, "api_client", lambda **_: _scripted_client(busy_twice, calls))
    assert dispatch.SlotDispatcher("image-generation", max_slots=1, poll_s=0.05).run(lambda: 42) == 42
    assert calls[:3] == ["/api/v2/concurrency_limits/increment-with-lease"] * 3


def test_refused_requests_without_a_demand_table_back_off_to_max_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each refusal in a row doubles the wait before the next request, up to ``max_poll_s``: each
    refused request is a write on the Prefect server, and nothing else says when a slot frees."""
    from types import SimpleNamespace

    from tasks import dispatch

    calls: list[str] = []
    pauses: list[float] = []
    answers: list[tuple[int, dict[str, object]]] = [(423, {})] * 5 + [GRANTED]
    monkeypatch.setattr(dispatch, "api_client", lambda **_: _scripted_client(answers, calls))
    monkeypatch.setattr(dispatch.random, "uniform", lambda _low, high: high)
    monkeypatch.setattr(dispatch, "time", SimpleNamespace(monotonic=time.monotonic, sleep=pauses.append))
    dispatcher = dispatch.SlotDispatcher("moderation", max_slots=1, poll_s=0.01, max_poll_s=0.04)
    assert dispatcher.run(lambda: 42) == 42
    assert calls.count("/api/v2/concurrency_limits/increment-with-lease") == 6, calls
    assert pauses == pytest.approx([0.01, 0.02, 0.04, 0.04, 0.04]), pauses


class _FakeDemandTable:
    """A demand table where another process holds every slot until ``release`` is called. It has no
    more work waiting and is far ahead, so the split owes a newcomer the next slot."""

    def __init__(self, limit: int) -> None:
        from contentforge.fair_share import ShareDemand

        self.others = [ShareDemand("other", "busy-batch", 1, waiting=0, running=limit, served=100)]
        self.reads = 0
        self.lock = threading.Lock()

    def release(self) -> None:
        from dataclasses import replace

        with self.lock:
            self.others = [replace(row, running=row.running - 1) for row in self.others]

    def read(self) -> list[object]:
        with self.lock:
            self.reads += 1
            return list(self.others)

    def publish(self, participant: str, demands: list[object]) -> list[object]:
        with self.lock:
            self.reads += 1
            return [*self.others, *demands]


def test_a_refused_process_asks_again_when_the_table_shows_a_slot_given_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While rows read after a refusal show every slot held, the dispatcher does not ask again (no
    blind polling: ``full_poll_s`` is long here); a row showing a slot given back makes it ask at once."""
    from tasks import dispatch

    calls: list[str] = []
    answers = [(423, {}), GRANTED]
    monkeypatch.setattr(dispatch, "api_client", lambda **_: _scripted_client(answers, calls))
    table = _FakeDemandTable(limit=5)
    dispatcher = dispatch.SlotDispatcher(
        "image-generation",
        max_slots=5,
        poll_s=0.05,
        refresh_s=0.02,
        full_poll_s=600.0,
        demand_table=table,  # type: ignore[arg-type]
        limit_size=5,
    )
    future = dispatcher.submit(lambda: 42, share="mine")
    deadline = time.monotonic() + 30
    while table.reads < 40:  # many fresh reads after the first (refused) request
        assert time.monotonic() < deadline, table.reads
        time.sleep(0.01)
    assert calls == ["/api/v2/concurrency_limits/increment-with-lease"], calls
    assert not future.done()
    table.release()
    assert future.result(timeout=30) == 42
    assert calls[:2] == ["/api/v2/concurrency_limits/increment-with-lease"] * 2, calls
