"""Priorities that jump the queue and fair shares between batches (issue 14, item 4).

The split itself (``contentforge.fair_share``) and the dispatcher's local queue are tested as pure
logic; the demand table on SQLite and PostgreSQL; then two scenarios against the real Prefect server,
each once for the whole module: three normal 50-piece workloads saturate the 5 slots and a ``high``
one arrives mid-run, first as four dispatchers standing for four processes (the split goes through the
demand table), then as real batch flows in one process on the fixed-latency image backend. Both
measure the high generation's wait as a ratio to the generation time, from stored timestamps, and
check the invariants: never more than 5 at once, nothing run twice, every generation inside a slot.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from contentforge.db import make_engine, migrate
from contentforge.errors import InvalidInput
from contentforge.fair_share import ShareDemand, priority_rank, slot_targets, unserved_above
from contentforge.metrics import concurrency_figures

Span = tuple[datetime, datetime]


def _demand(
    participant: str, share: str, rank: int = 1, waiting: int = 50, running: int = 0, served: int = 0
) -> ShareDemand:
    return ShareDemand(participant, share, rank, waiting, running, served)


# The split, pure


def test_unknown_priority_is_refused_in_one_line() -> None:
    assert [priority_rank(p) for p in ("high", "normal", "low")] == [0, 1, 2]
    with pytest.raises(InvalidInput) as refused:
        priority_rank("urgent")
    assert str(refused.value) == "unknown priority 'urgent': choose one of high, normal, low"


def test_high_shares_are_served_before_normal_and_low_gets_what_is_left() -> None:
    demands = [
        _demand("p1", "a", rank=1),
        _demand("p2", "b", rank=2),
        _demand("p3", "h", rank=0, waiting=2),
    ]
    targets = slot_targets(demands, 5)
    assert targets == {("p3", "h"): 2, ("p1", "a"): 3, ("p2", "b"): 0}
    # The normal share holding all 5 is owed nothing to; the high one is owed 2 until it runs them.
    assert unserved_above([d for d in demands if d.participant != "p1"], targets, rank=1) == 2
    assert unserved_above(demands, targets, rank=0) == 0


def test_equal_shares_split_evenly_and_the_remainder_goes_to_the_least_served() -> None:
    demands = [_demand("p1", "a", served=9), _demand("p2", "b", served=3), _demand("p3", "c", served=5)]
    assert slot_targets(demands, 5) == {("p1", "a"): 1, ("p2", "b"): 2, ("p3", "c"): 2}
    assert slot_targets(list(reversed(demands)), 5) == slot_targets(demands, 5), "order must not matter"
    # Once the served counts move, the remainder moves with them: no first-come-keeps-all.
    later = [_demand("p1", "a", served=9), _demand("p2", "b", served=12), _demand("p3", "c", served=11)]
    assert slot_targets(later, 5) == {("p1", "a"): 2, ("p2", "b"): 1, ("p3", "c"): 2}


def test_a_share_gets_no_more_than_it_can_use_and_the_rest_is_not_left_idle() -> None:
    demands = [_demand("p1", "a", waiting=1), _demand("p2", "b", waiting=30), _demand("p3", "c", waiting=0)]
    assert slot_targets(demands, 5) == {("p1", "a"): 1, ("p2", "b"): 4, ("p3", "c"): 0}


def test_the_local_queue_takes_high_first_then_round_robin_between_batches() -> None:
    from tasks.dispatch import _LocalQueue

    local = _LocalQueue()
    for share, count in (("first", 4), ("second", 2)):
        for _ in range(count):
            local.put(Future(), lambda: None, 1, share)
    dropped: Future[Any] = Future()
    local.put(dropped, lambda: None, 0, "cancelled")
    local.put(Future(), lambda: None, 0, "urgent")
    assert dropped.cancel()
    order = []
    while (work := local.take()) is not None:
        order.append(work.share)
        local.done(work)
    # FIFO would give first x4 then second x2; the cancelled work is never taken.
    assert order == ["urgent", "first", "second", "first", "second", "first", "first"]


def test_an_unknown_priority_is_refused_before_any_work(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI says so in one line before any server is contacted; the flows before they do anything."""
    from typer.testing import CliRunner

    from contentforge.config import get_settings
    from contentforge.personas import sample_persona
    from contentforge_cli.main import app
    from flows.generate_images import generate_images
    from flows.produce_content_batch import produce_content_batch

    def connect(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the Prefect server was contacted before the input was refused")

    monkeypatch.setattr("contentforge_cli.runtime.connect", connect)
    get_settings.cache_clear()
    url = get_settings().resolved_database_url
    migrate(url)
    from contentforge.db import Repository

    Repository(make_engine(url)).upsert_persona(sample_persona())
    result = CliRunner().invoke(app, ["produce", "mia-fit", "-n", "2", "--priority", "urgent"])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "unknown priority 'urgent': choose one of high, normal, low" in lines[0], lines
    with pytest.raises(InvalidInput, match="unknown priority 'HIGH'"):
        produce_content_batch.fn(persona="no-such-persona", priority="HIGH")
    with pytest.raises(InvalidInput, match="unknown priority ''"):
        generate_images.fn(batch_id="no-such-batch", piece_ids=["x"], priority="")


# The demand table


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def demand_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = (
        f"sqlite:///{tmp_path / 'turns.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_demand_table_replaces_a_participants_rows_and_forgets_dead_ones(demand_engine: Engine) -> None:
    from contentforge.db.turns import DemandTable

    table = DemandTable(demand_engine, "image-generation", fresh_s=0.5)
    other = DemandTable(demand_engine, "another-limit")
    other.publish("p9", [_demand("p9", "x")])
    table.publish("p1", [_demand("p1", "a", waiting=3), _demand("p1", "idle", waiting=0)])
    rows = table.publish("p2", [_demand("p2", "b", rank=0, waiting=1)])
    assert sorted((r.participant, r.share, r.rank, r.waiting) for r in rows) == [
        ("p1", "a", 1, 3),
        ("p2", "b", 0, 1),
    ], "a share wanting nothing is not advertised; other limits are not mixed in"
    table.publish("p1", [_demand("p1", "a", waiting=2, running=1, served=4)])
    assert {(r.participant, r.waiting, r.running, r.served) for r in table.read()} == {
        ("p1", 2, 1, 4),
        ("p2", 1, 0, 0),
    }
    table.publish("p2", [])  # withdrawn
    assert [r.participant for r in table.read()] == ["p1"]
    time.sleep(0.7)  # p1 stops refreshing, as a killed process would
    assert table.read() == []
    assert [r.participant for r in other.read()] == ["p9"]


# Against the real Prefect server

LIMIT = 5
NORMAL_BATCHES = 3
PIECES = 50


@dataclass
class Workload:
    """What one scenario stored: each generation's (queued, started, finished) by batch and piece."""

    latency_s: float
    generations: dict[str, dict[int, tuple[datetime, datetime, datetime]]] = field(default_factory=dict)
    runs: dict[tuple[str, int], int] = field(default_factory=dict)
    slots: list[Span] = field(default_factory=list)
    high_submitted_after: int = 0

    def spans(self) -> list[Span]:
        return [(s, f) for pieces in self.generations.values() for (_, s, f) in pieces.values()]

    def done_by(self, share: str, moment: datetime) -> int:
        return sum(f <= moment for (_, _, f) in self.generations[share].values())


def _unique_limit(slots: int) -> str:
    from tasks.bootstrap import ensure_concurrency_limit

    name = f"test-priority-{uuid.uuid4().hex[:8]}"
    assert ensure_concurrency_limit(name, slots) == "created"
    return name


@pytest.fixture(scope="module")
def across_processes(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Workload:
    """Four dispatchers (as four processes would run them), one shared demand table: three run 50
    normal generations each; once 20 generations are done, the fourth asks for one high generation."""
    from contentforge.db.turns import DemandTable
    from tasks.dispatch import SlotDispatcher

    name = _unique_limit(LIMIT)
    url = f"sqlite:///{tmp_path_factory.mktemp('turns') / 'turns.db'}"
    migrate(url)
    engine = make_engine(url)
    workload = Workload(latency_s=0.4)
    lock = threading.Lock()
    finished = threading.Semaphore(0)

    def generation(share: str, index: int, queued: datetime) -> None:
        started = datetime.now(UTC)
        time.sleep(workload.latency_s)
        with lock:
            workload.runs[(share, index)] = workload.runs.get((share, index), 0) + 1
            workload.generations.setdefault(share, {})[index] = (queued, started, datetime.now(UTC))
        finished.release()

    def dispatcher() -> SlotDispatcher:
        return SlotDispatcher(
            name, max_slots=LIMIT, linger_s=0.05, demand_table=DemandTable(engine, name), limit_size=LIMIT
        )

    normal = [dispatcher() for _ in range(NORMAL_BATCHES)]
    futures = []
    for n, process in enumerate(normal):
        queued = datetime.now(UTC)
        futures += [
            process.submit(lambda s=f"normal-{n}", i=i, q=queued: generation(s, i, q), share=f"normal-{n}")
            for i in range(PIECES)
        ]
    for _ in range(20):
        assert finished.acquire(timeout=120)
    high = dispatcher()
    workload.high_submitted_after = 20
    queued = datetime.now(UTC)
    futures.append(high.submit(lambda: generation("high", 0, queued), priority="high", share="high"))
    for future in futures:
        future.result(timeout=300)
    for process in [*normal, high]:
        process.close()
        workload.slots += process.lease_spans
    # Every generation ran inside a slot its own process held.
    for process, share in [*((p, f"normal-{n}") for n, p in enumerate(normal)), (high, "high")]:
        for _, started, ended in workload.generations[share].values():
            assert any(g <= started and ended <= r for g, r in process.lease_spans), (share, started)
    engine.dispose()
    return workload


@pytest.mark.slow
def test_across_processes_a_high_generation_takes_the_next_free_slot(across_processes: Workload) -> None:
    _assert_invariants(across_processes)
    overtaken, ratio = _overtaken_and_ratio(across_processes)
    # Nothing is preempted and the other processes learn of the high generation from the demand table
    # (read every 0.1 s), so the normal generations that start meanwhile overtake it: one round of the
    # slots at most, where in FIFO order the ~110 queued ahead of it would all have.
    assert overtaken <= LIMIT, (overtaken, ratio)


@pytest.mark.slow
def test_across_processes_equal_batches_progress_together(across_processes: Workload) -> None:
    # Across processes a hand-off needs the Prefect server (a release, then an acquisition): on a loaded
    # machine its answers sometimes take seconds, and the process waiting for one falls behind by as
    # much. So this asserts that no process is starved (each has at least half the mean) rather than
    # the ±20% the batches in one process keep; without the demand table one of three processes had
    # done 0 of its 50 at mid-run (first come keeps all).
    _assert_fair_at_mid_run(across_processes, [f"normal-{n}" for n in range(NORMAL_BATCHES)], tolerance=0.5)


def _assert_invariants(workload: Workload) -> None:
    assert set(workload.runs.values()) == {1}, "a generation ran twice"
    assert len(workload.runs) == NORMAL_BATCHES * PIECES + 1
    figures = concurrency_figures(workload.spans(), slots=LIMIT)
    assert figures.peak_concurrent <= LIMIT
    assert figures.peak_concurrent >= LIMIT - 1, "the slots were not used in parallel"


def _overtaken_and_ratio(workload: Workload) -> tuple[int, float]:
    """How many normal generations started after the high one was queued and before it started; and
    its wait as a ratio to its generation time (stored timestamps)."""
    queued, started, ended = workload.generations["high"][0]
    overtaken = sum(
        queued < s < started
        for share, pieces in workload.generations.items()
        if share != "high"
        for (_, s, _) in pieces.values()
    )
    return overtaken, (started - queued) / (ended - started)


def _assert_fair_at_mid_run(workload: Workload, shares: list[str], tolerance: float = 0.2) -> None:
    """Half-way through the time all the batches were running side by side, each has done as many
    generations since then as the others, ±``tolerance`` (20%).

    "Side by side" starts when the last of them queued its first generation: on a busy machine their
    planning ends seconds apart, and a batch cannot be served before it asks.
    """
    first_queued = max(min(q for (q, _, _) in workload.generations[share].values()) for share in shares)
    last_started = min(max(s for (_, s, _) in workload.generations[share].values()) for share in shares)
    mid = first_queued + (last_started - first_queued) / 2
    done = {
        share: sum(first_queued <= s and f <= mid for (_, s, f) in workload.generations[share].values())
        for share in shares
    }
    mean = sum(done.values()) / len(done)
    window = (first_queued.time(), mid.time(), last_started.time())
    assert mean >= 5, f"too short a window to compare: {done} in {window}"
    assert all(abs(n - mean) <= tolerance * mean for n in done.values()), (done, window)


@pytest.fixture(scope="module")
def batch_flows(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workload]:
    """The real batch flow, three normal 50-piece batches at once in this process on the fixed-latency
    backend; once 20 images are stored, a high one-piece batch. Timestamps are the stored piece rows'."""
    from contentforge.config import get_settings
    from contentforge.images.fixed_latency import FixedLatencyBackend
    from contentforge.personas import sample_persona
    from flows.produce_content_batch import produce_content_batch
    from tasks import resources
    from tasks.bootstrap import ensure_concurrency_limit, ensure_crash_automation
    from tasks.generation_queue import generation_dispatcher

    patch = pytest.MonkeyPatch()
    patch.setenv("CONTENTFORGE_DATA_DIR", str(tmp_path_factory.mktemp("priorities") / "data"))
    patch.setenv("CONTENTFORGE_IMAGE_PROFILE", "fixed-latency")
    patch.setenv("CONTENTFORGE_FIXED_LATENCY_S", "0.5")
    get_settings.cache_clear()
    calls: list[tuple[int, datetime, datetime]] = []
    generate = FixedLatencyBackend.generate

    def counted(self: FixedLatencyBackend, request: Any) -> Any:
        started = datetime.now(UTC)
        result = generate(self, request)
        calls.append((request.seed, started, datetime.now(UTC)))
        return result

    patch.setattr(FixedLatencyBackend, "generate", counted)
    try:
        settings = get_settings()
        ensure_concurrency_limit(settings.concurrency_limit_name, LIMIT)
        # Flows bootstrapping a fresh server at the same moment race on the crash automation (not what
        # this test is about): create it first.
        ensure_crash_automation(settings)
        repo = resources.repository()
        repo.upsert_persona(sample_persona())
        errors: list[BaseException] = []

        def run(batch_id: str, pieces: int, seed: int, priority: str) -> None:
            try:
                produce_content_batch(
                    persona="mia-fit",
                    num_pieces=pieces,
                    seed=seed,
                    batch_id=batch_id,
                    include_hooks=False,
                    safety_check=False,
                    priority=priority,
                )
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        normal = [f"normal-batch-{n}" for n in range(NORMAL_BATCHES)]
        threads = [
            threading.Thread(target=run, args=(batch_id, PIECES, n + 1, "normal"))
            for n, batch_id in enumerate(normal)
        ]
        # "Started together": their planning ends seconds apart on a busy machine, so the slots are held
        # (high priority, taken first) until all three batches have queued their generations.
        dispatcher = generation_dispatcher()
        release, holding = threading.Event(), threading.Semaphore(0)

        def hold_slot() -> None:
            holding.release()
            release.wait(timeout=240)

        holds = [dispatcher.submit(hold_slot, priority="high", share="hold") for _ in range(LIMIT)]
        for _ in holds:
            assert holding.acquire(timeout=60), "the slots were never held"
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 240
        while len(dispatcher._queue) < NORMAL_BATCHES * PIECES:
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.1)
        release.set()
        for hold in holds:
            hold.result(timeout=60)
        while sum(1 for batch_id in normal for r in repo.pieces(batch_id=batch_id) if r.finished_at) < 20:
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.1)
        urgent = threading.Thread(target=run, args=("high-batch", 1, 99, "high"))
        urgent.start()
        for thread in [*threads, urgent]:
            thread.join(timeout=300)
        assert not errors, errors
        workload = Workload(latency_s=0.5, high_submitted_after=20)
        for batch_id in [*normal, "high-batch"]:
            rows = repo.pieces(batch_id=batch_id)
            assert all(r.queued_at and r.started_at and r.finished_at for r in rows), batch_id
            share = "high" if batch_id == "high-batch" else f"normal-{normal.index(batch_id)}"
            workload.generations[share] = {
                r.index: (r.queued_at, r.started_at, r.finished_at)  # type: ignore[misc]
                for r in rows
            }
            for r in rows:
                workload.runs[(share, r.index)] = 0
        # Nothing generated twice: one backend call per stored piece, each inside a slot of this process.
        assert len(calls) == len(workload.runs), (len(calls), len(workload.runs))
        for key in workload.runs:
            workload.runs[key] = 1
        slots = resources.dispatcher().lease_spans
        for _, started, ended in calls:
            assert any(g <= started and ended <= r for g, r in slots), started
        yield workload
    finally:
        patch.undo()
        get_settings.cache_clear()


@pytest.mark.slow
def test_a_high_batch_generation_starts_within_one_generation(batch_flows: Workload) -> None:
    _assert_invariants(batch_flows)
    overtaken, _ = _overtaken_and_ratio(batch_flows)
    queued, started, _ = batch_flows.generations["high"][0]
    # The slot it takes is the first to free after it was queued: the generation running then that
    # ended first. Its wait, as a ratio to that generation's time, is at most 1 (it waited for no
    # more than that one generation) plus the hand-off; FIFO would have it wait for the ~110 queued
    # ahead of it (~20 generation times). Measured against the generation that freed the slot, not a
    # nominal latency, so a loaded machine that stretches everything does not fail it.
    running = [
        (s, f)
        for share, pieces in batch_flows.generations.items()
        if share != "high"
        for (_, s, f) in pieces.values()
        if s <= queued < f
    ]
    assert running, "the slots were not busy when the high batch arrived"
    freed_start, freed_end = min(running, key=lambda span: span[1])
    ratio = (started - queued) / (freed_end - freed_start)
    handoff = (started - freed_end).total_seconds()
    assert overtaken < LIMIT, (overtaken, ratio, handoff)
    assert ratio <= 1.25, (overtaken, ratio, handoff)


@pytest.mark.slow
def test_equal_priority_batches_progress_together(batch_flows: Workload) -> None:
    _assert_fair_at_mid_run(batch_flows, [f"normal-{n}" for n in range(NORMAL_BATCHES)])
