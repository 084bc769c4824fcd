"""Priorities that jump the queue and fair shares between batches (issue 14, item 4), end to end.

The split itself is pure logic, tested in ``tests/test_fair_share.py``. Here: an unknown priority is
refused before any work; the demand table on SQLite and PostgreSQL; and two scenarios against the real
Prefect server, each run once for the module, on the labelled fixed-latency backend:

- across processes: three OS processes (each a slot dispatcher, as each batch process has) start 50
  normal generations together on the 5 slots; once 30 are done a fourth process asks for one ``high``
  generation. Equal batches must have done as many generations as each other (±20%) at mid-run, and
  the high one must start within one generation of its request, plus a documented hand-off.
- real batch flows in one process: three normal batches saturate the slots, then a ``high`` one-piece
  batch arrives; its generation must start within one generation, from the stored piece rows.

Both check the invariants: never more than 5 at once, nothing generated twice, every generation inside
a slot its own process held. Timings are ratios to the median generation time, never wall-clock limits.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from contentforge.db import make_engine, migrate
from contentforge.errors import InvalidInput
from contentforge.fair_share import ShareDemand
from contentforge.metrics import concurrency_figures

Span = tuple[datetime, datetime]
REPO = Path(__file__).resolve().parents[1]


def _demand(
    participant: str, share: str, rank: int = 1, waiting: int = 50, running: int = 0, served: int = 0
) -> ShareDemand:
    return ShareDemand(participant, share, rank, waiting, running, served)


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


@pytest.fixture
def demand_engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


def test_demand_table_replaces_a_participants_rows_and_forgets_dead_ones(demand_engine: Engine) -> None:
    from contentforge.db.models import utcnow
    from contentforge.db.turns import DemandTable

    table = DemandTable(demand_engine, "image-generation", fresh_s=10.0)
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
    # p1 stops refreshing, as a killed process would: read as of just after its rows went stale (a
    # clock, not a sleep, so a slow machine cannot expire rows between the publishes above).
    assert table.read(now=utcnow() + timedelta(seconds=10.5)) == []
    assert [r.participant for r in other.read()] == ["p9"]


# Against the real Prefect server

LIMIT = 5
NORMAL_BATCHES = 3


@dataclass
class Workload:
    """What one scenario stored: each generation's (queued, started, finished) by share and piece."""

    generations: dict[str, dict[int, tuple[datetime, datetime, datetime]]] = field(default_factory=dict)
    runs: dict[tuple[str, int], int] = field(default_factory=dict)
    slot_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per share's process: slots acquired in all, handed over to it, handed by it, offered in vain."""

    @property
    def normal(self) -> list[str]:
        return sorted(share for share in self.generations if share != "high")

    def spans(self) -> list[Span]:
        return [(s, f) for pieces in self.generations.values() for (_, s, f) in pieces.values()]

    def median_generation_s(self) -> float:
        return statistics.median((f - s).total_seconds() for (s, f) in self.spans())

    def high_wait(self) -> tuple[float, int]:
        """The high generation's wait from its request to its start, in median generation times; and how
        many normal generations started in between."""
        queued, started, _ = self.generations["high"][0]
        overtaken = sum(
            queued < s < started for share in self.normal for (_, s, _) in self.generations[share].values()
        )
        return (started - queued).total_seconds() / self.median_generation_s(), overtaken


def _unique_limit(slots: int) -> str:
    from tasks.bootstrap import ensure_concurrency_limit

    name = f"test-priority-{uuid.uuid4().hex[:8]}"
    assert ensure_concurrency_limit(name, slots) == "created"
    return name


CROSS_PIECES = 50
CROSS_LATENCY_S = 0.8
HIGH_AFTER = 30


@pytest.fixture(scope="module")
def across_processes(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Workload:
    """Three normal processes and one high one (``tests/support/slot_worker.py``), one demand table.

    "Started together": the test holds the 5 slots itself until all three processes have queued their
    generations (their rows are in the table), so none is served before the others ask.
    """
    from prefect.client.orchestration import get_client

    from contentforge.db.turns import DemandTable

    name = _unique_limit(LIMIT)
    folder = tmp_path_factory.mktemp("across")
    url = f"sqlite:///{folder / 'turns.db'}"
    migrate(url)
    engine = make_engine(url)
    table = DemandTable(engine, name)
    shares = {f"normal-{n}": (CROSS_PIECES, "normal", "go-normal") for n in range(NORMAL_BATCHES)}
    shares["high"] = (1, "high", "go-high")
    workers = {}
    for share, (pieces, priority, go) in shares.items():
        spec = {
            "limit": name,
            "slots": LIMIT,
            "database_url": url,
            "share": share,
            "pieces": pieces,
            "priority": priority,
            "latency_s": CROSS_LATENCY_S,
            "ready": str(folder / f"{share}.ready"),
            "go": str(folder / go),
            "out": str(folder / f"{share}.json"),
        }
        workers[share] = subprocess.Popen(
            [sys.executable, "-m", "tests.support.slot_worker", json.dumps(spec)],
            cwd=REPO,
            env=dict(os.environ),
        )

    def wait_for(condition: Any, what: str, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            failed = {share: w.returncode for share, w in workers.items() if w.poll() not in (None, 0)}
            assert not failed and time.monotonic() < deadline, f"waiting for {what}: {failed}"
            time.sleep(0.1)

    try:
        wait_for(lambda: all((folder / f"{share}.ready").exists() for share in shares), "the processes")
        with get_client(sync_client=True) as client:
            held = [
                client.increment_concurrency_slots_with_lease(
                    names=[name], slots=1, mode="concurrency", lease_duration=120
                ).json()["lease_id"]
                for _ in range(LIMIT)
            ]
            (folder / "go-normal").touch()
            wait_for(lambda: len({r.share for r in table.read() if r.wants}) == NORMAL_BATCHES, "their rows")
            for lease_id in held:
                client.release_concurrency_slots_with_lease(lease_id)
        wait_for(lambda: sum(r.served - r.running for r in table.read()) >= HIGH_AFTER, "30 generations")
        (folder / "go-high").touch()
        for share, worker in workers.items():
            assert worker.wait(timeout=300) == 0, share
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()
        engine.dispose()
    workload = Workload()
    for share in shares:
        stored = json.loads((folder / f"{share}.json").read_text())
        counted = ("leases_taken", "offers_taken", "offers_handed", "offers_withdrawn")
        workload.slot_counts[share] = {name: stored[name] for name in counted}
        slots = [(datetime.fromisoformat(g), datetime.fromisoformat(r)) for g, r in stored["slots"]]
        timings = workload.generations.setdefault(share, {})
        for index, *times in stored["generations"]:
            queued, started, finished = map(datetime.fromisoformat, times)
            workload.runs[(share, index)] = workload.runs.get((share, index), 0) + 1
            timings[index] = (queued, started, finished)
            assert any(g <= started and finished <= r for g, r in slots), ("outside its slots", share, index)
    return workload


@pytest.mark.slow
def test_across_processes_equal_batches_progress_together(across_processes: Workload) -> None:
    _assert_invariants(across_processes, NORMAL_BATCHES * CROSS_PIECES + 1)
    _assert_fair_at_mid_run(across_processes)


@pytest.mark.slow
def test_across_processes_a_high_generation_starts_within_one_generation(
    across_processes: Workload, record_property: Any
) -> None:
    """The high process's generation waits for the first normal generation to end, at most one
    generation, plus the hand-off between processes: the holder whose generation ends reads the demand
    table then (not a view up to ``refresh_s`` old) and offers its slot's lease to the high process
    (``contentforge.db.slot_offers``), which looks for offers every ``refresh_s / 4`` while it waits and
    takes the lease over: the slot never goes free on the server, so no other process can take it in
    between. Measured 0.65 and 0.70 (2026-12-01, against 0.41, 0.45 and 1.35 when the slot was released
    and acquired again, the 1.35 run losing it to a normal generation); the hand-off itself is a few
    hundredths of a second, so ``HANDOFF_ALLOWANCE`` is a quarter generation. In first-in-first-out order
    it would wait for the ~100 generations queued ahead of it (~20 times)."""
    ratio, overtaken = across_processes.high_wait()
    record_property("high_wait_ratio", round(ratio, 3))  # in --junitxml reports
    record_property("slot_counts", json.dumps(across_processes.slot_counts))
    assert ratio <= 1 + HANDOFF_ALLOWANCE, (ratio, overtaken)
    assert overtaken < LIMIT, (ratio, overtaken)


HANDOFF_ALLOWANCE = 0.25
"""The part of a generation a hand-off may add: nothing preempts a running generation, so "within one
generation" is one generation at worst (the high request lands just after every slot started one) plus
the hand-off (measured in the tests' docstrings and docs/benchmarks.md)."""


def _assert_invariants(workload: Workload, generations: int) -> None:
    assert set(workload.runs.values()) == {1}, "a generation ran twice"
    assert len(workload.runs) == generations
    figures = concurrency_figures(workload.spans(), slots=LIMIT)
    assert figures.peak_concurrent <= LIMIT
    assert figures.peak_concurrent >= LIMIT - 1, "the slots were not used in parallel"


def _assert_fair_at_mid_run(workload: Workload, tolerance: float = 0.2) -> None:
    """Half-way through the time the normal batches ran side by side (from the first generation's start
    to the earliest last start of one of them), each has finished as many generations as the others,
    ±``tolerance`` (20%) of their mean."""
    shares = workload.normal
    first = min(s for share in shares for (_, s, _) in workload.generations[share].values())
    last = min(max(s for (_, s, _) in workload.generations[share].values()) for share in shares)
    mid = first + (last - first) / 2
    done = {share: sum(f <= mid for (_, _, f) in workload.generations[share].values()) for share in shares}
    mean = sum(done.values()) / len(done)
    window = (first.time(), mid.time(), last.time())
    assert mean >= 10, f"too short a window to compare: {done} in {window}"
    assert all(abs(n - mean) <= tolerance * mean for n in done.values()), (done, window)


BATCH_PIECES = 15
BATCH_LATENCY_S = 0.8


@pytest.fixture(scope="module")
def batch_flows(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workload]:
    """The real batch flow, three normal batches at once in this process on the fixed-latency backend;
    once 10 images are stored, a high one-piece batch. Timestamps are the stored piece rows'."""
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
    patch.setenv("CONTENTFORGE_FIXED_LATENCY_S", str(BATCH_LATENCY_S))
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
            threading.Thread(target=run, args=(batch_id, BATCH_PIECES, n + 1, "normal"))
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
        while len(dispatcher._queue) < NORMAL_BATCHES * BATCH_PIECES:
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.1)
        release.set()
        for hold in holds:
            hold.result(timeout=60)
        while sum(1 for batch_id in normal for r in repo.pieces(batch_id=batch_id) if r.finished_at) < 10:
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.1)
        urgent = threading.Thread(target=run, args=("high-batch", 1, 99, "high"))
        urgent.start()
        for thread in [*threads, urgent]:
            thread.join(timeout=300)
        assert not errors, errors
        workload = Workload()
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
def test_a_high_batch_generation_starts_within_one_generation(
    batch_flows: Workload, record_property: Any
) -> None:
    """In one process a freed slot changes hands without the Prefect server: the high generation waits
    for the first normal generation to end (at most one generation) and the holder that finishes it
    takes the high one next, without reading the demand table first. Its stored start is taken once
    the piece's generation call begins, after the holder thread wakes and the piece's request is
    prepared, which took up to 0.2 s beyond the first free slot at load average 46 on 2 cores (ratio
    0.41-1.34 at 0.5 s generations then; 0.13-0.19 in later loaded runs, 0.65-0.70 at 0.8 s on
    2026-12-01). In first-in-first-out order it would wait for the ~30 generations queued ahead of it."""
    _assert_invariants(batch_flows, NORMAL_BATCHES * BATCH_PIECES + 1)
    ratio, overtaken = batch_flows.high_wait()
    record_property("high_wait_ratio", round(ratio, 3))
    assert ratio <= 1 + HANDOFF_ALLOWANCE, (ratio, overtaken)
    assert overtaken < LIMIT, (ratio, overtaken)
