"""Warm GPU workers (issue 18, item 1): ``contentforge gpu-worker`` processes serve the batches' pieces.

Real processes on the session's Prefect server: each worker is the CLI command, started detached as
``contentforge up`` starts its services; the batch flows run in the test process with
``CONTENTFORGE_GPU_TASK_WORKERS`` set, so they send every piece to the workers. The labelled
fixed-latency backend makes a generation take a known time and costs no model.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contentforge.config import get_settings
from contentforge.metrics import concurrency_figures
from contentforge.personas import sample_persona

pytestmark = pytest.mark.slow


@pytest.fixture
def task_workers_env(
    settings_env: Path, prefect_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """The test's batches in warm-worker mode; yields a starter of worker processes (all stopped after)."""
    from contentforge_cli.gpu_worker import gpu_worker_service
    from contentforge_cli.stack import start, stop
    from tasks import resources

    env = {
        "CONTENTFORGE_DATA_DIR": str(settings_env),
        "CONTENTFORGE_IMAGE_PROFILE": "fixed-latency",
        "CONTENTFORGE_FIXED_LATENCY_S": "0.3",
        "CONTENTFORGE_GPU_TASK_WORKERS": "true",
        "CONTENTFORGE_GPU_TASK_PIECES": "2",
        # A killed worker's generation claims run out in 3 s, not 30: the second worker takes over sooner.
        "CONTENTFORGE_GENERATION_CLAIM_S": "3",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    resources.repository().upsert_persona(sample_persona())
    run_dir = tmp_path / "run"
    started: list[str] = []

    def start_worker(name: str, runs: int | None = None, **extra: str) -> int:
        service = gpu_worker_service(prefect_server, name, runs)
        service.env.update(env | extra)
        pid, _ = start(run_dir, service)
        started.append(name)
        return pid

    try:
        yield {"start": start_worker, "run_dir": run_dir}
    finally:
        for name in started:
            stop(run_dir, name)


def _logs(run_dir: Path) -> dict[str, str]:
    return {path.name: path.read_text()[-3000:] for path in run_dir.glob("*.log")}


def _batch_runs(batch_id: str, settle_s: float = 30.0) -> list[Any]:
    """The batch's background runs on the GPU workers, with their full state histories, once every run
    is in a final state (or after ``settle_s``).

    Picked by task, not by name: a run the batch superseded may never have been named by a worker, and
    the kill test checks its name rather than assuming it (once, only renamed runs were listed here).
    Waited for: the batch is done once every image is recorded, while the server records a run's end
    from its worker's events, a moment later.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterTags
    from prefect.client.schemas.sorting import TaskRunSort

    from tasks.gpu_workers import generate_pieces_on_gpu

    deadline = time.monotonic() + settle_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(tags=TaskRunFilterTags(all_=[f"batch:{batch_id}"])),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC,
                limit=200,
            )
            gpu_runs = [run for run in runs if run.task_key == generate_pieces_on_gpu.task_key]
            settled = all(run.state is not None and run.state.is_final() for run in gpu_runs)
            if settled or time.monotonic() > deadline:
                return [(run, client.read_task_run_states(run.id)) for run in gpu_runs]
            time.sleep(0.2)


def test_batches_of_two_flow_runs_are_served_by_one_warm_worker_with_one_model_load(
    task_workers_env: dict[str, Any],
) -> None:
    from flows.produce_content_batch import produce_content_batch
    from tasks import resources
    from tasks.gpu_workers import CLAIM_PREFIX, wait_for_workers

    pid = task_workers_env["start"]("gpu-worker-a")
    (worker,) = wait_for_workers(1)
    assert worker.endswith(f"-{pid}")

    for batch_id, seed in (("warm-1", 1), ("warm-2", 2)):
        summary = produce_content_batch("mia-fit", num_pieces=6, seed=seed, batch_id=batch_id)
        assert summary["by_status"].get("failed", 0) == 0, summary

    repo = resources.repository()
    rows = [row for batch in ("warm-1", "warm-2") for row in repo.pieces(batch_id=batch)]
    assert len(rows) == 12 and all(row.storage_key for row in rows)
    figures = concurrency_figures(((r.started_at, r.finished_at) for r in rows if r.started_at), 5)
    assert figures.pieces == 12 and 1 <= figures.peak_concurrent <= 5
    for batch_id in ("warm-1", "warm-2"):
        runs = _batch_runs(batch_id)
        assert len(runs) == 3, [run.name for run, _ in runs]  # 6 pieces, 2 per run
        for run, states in runs:
            assert run.state is not None and run.state.is_completed(), run.state
            assert f"{CLAIM_PREFIX}{worker}" in {state.message for state in states}, "generated on the worker"
    logs = _logs(task_workers_env["run_dir"])["gpu-worker-a.log"]
    assert logs.count(": model load ") == 1, logs  # loaded once, for both flow runs' batches
    assert "model load 1:" in logs


def test_a_worker_killed_mid_batch_loses_nothing_and_nothing_is_generated_twice(
    task_workers_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 the only worker while it generates; a second one finishes the batch.

    The first worker takes one run at a time (``--runs 1``), so it holds at most 2 of the 5 slots when
    it dies: their leases stay taken until they expire, the other 3 serve the second worker meanwhile.
    """
    from support.faults import query

    from contentforge.db.generation_claims import GenerationClaims
    from flows.produce_content_batch import produce_content_batch
    from tasks import gpu_workers, resources

    monkeypatch.setattr(gpu_workers, "WORKER_GRACE_S", 2.0)
    monkeypatch.setattr(gpu_workers, "STUCK_S", 3.0)
    # The batch's warnings as its GPU stage writes them, whatever an earlier test did to logging's
    # configuration (in the full suite, pytest's log capture saw none of them).
    warnings: list[str] = []
    run_logger = gpu_workers.get_run_logger

    class RecordingLogger:
        def __init__(self) -> None:
            self.inner = run_logger()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
            warnings.append(message % args)
            self.inner.warning(message, *args, **kwargs)

    monkeypatch.setattr(gpu_workers, "get_run_logger", RecordingLogger)
    first = task_workers_env["start"]("gpu-worker-first", 1, CONTENTFORGE_FIXED_LATENCY_S="1.0")
    gpu_workers.wait_for_workers(1)
    repo = resources.repository()
    outcome: dict[str, Any] = {}

    def run_batch() -> None:
        try:
            outcome["summary"] = produce_content_batch("mia-fit", num_pieces=8, seed=5, batch_id="killed")
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    batch = threading.Thread(target=run_batch)
    batch.start()
    claims = GenerationClaims(repo.sessions)

    def first_worker_mid_run() -> bool:
        """A piece is stored and the first worker holds a claim on one that is not: a run is under way
        on it (claims end with their run). Killing it right after a piece is stored could land between
        two runs, when it holds nothing to take over."""
        rows = repo.pieces(batch_id="killed")
        unstored = [row.id for row in rows if not row.storage_key]
        if len(unstored) == len(rows):
            return False
        return any(f"-{first}, run " in holder.owner for holder in claims.holders(unstored).values())

    deadline = time.monotonic() + 120
    while not first_worker_mid_run():
        assert time.monotonic() < deadline and batch.is_alive(), (outcome, _logs(task_workers_env["run_dir"]))
        time.sleep(0.1)
    os.kill(first, signal.SIGKILL)  # mid-run: it holds claimed pieces that are not stored
    task_workers_env["start"]("gpu-worker-second")
    batch.join(timeout=240)
    logs = _logs(task_workers_env["run_dir"])
    states = [(run.name, run.state.name if run.state else None) for run, _ in _batch_runs("killed")]
    assert not batch.is_alive(), ("the batch never finished", states, logs)
    assert "summary" in outcome, (outcome, logs)

    rows = repo.pieces(batch_id="killed")
    assert len(rows) == 8 and all(row.storage_key for row in rows), [(r.id, r.status) for r in rows]
    assert outcome["summary"]["by_status"].get("failed", 0) == 0
    # Nothing stored twice: one image file per piece.
    ids = {row.id for row in rows}
    files = [path for path in Path(get_settings().data_dir).rglob("*.png") if path.stem in ids]
    assert len(files) == 8, files
    # Nothing generated twice: every kept image is charged; any other charge is a generation that was
    # lost with the killed worker (at most one per slot it held), never a second live copy.
    charges = query(
        Path(get_settings().data_dir),
        "SELECT piece_id, charge_key FROM cost_entries WHERE kind = 'image' AND batch_id = :b",
        b="killed",
    )
    kept = {row.id: f"image:{row.id}:{row.record.extra['generation_id']}" for row in rows if row.record}
    assert set(kept.values()) <= {key for _, key in charges}
    extra = Counter(piece_id for piece_id, key in charges if key != kept[piece_id])
    assert sum(extra.values()) <= 2 and max(extra.values(), default=0) <= 1, extra
    # The dead worker's run was superseded and its pieces sent again, to the second worker: the batch's
    # log says so, and so does the Prefect server (what the UI shows), where the superseded run stays,
    # ``Superseded``, next to the run sent in its place.
    resent = [message for message in warnings if "pieces sent again as run" in message]
    assert resent and all("stopped" in message for message in resent), (warnings, logs)
    _assert_superseded_runs_were_sent_again("killed", resent)
    figures = concurrency_figures(((r.started_at, r.finished_at) for r in rows if r.started_at), 5)
    assert figures.peak_concurrent <= 5


def test_each_send_of_pieces_is_a_run_of_its_own_even_where_the_flow_runs_task_count_restarts(
    settings_env: Path, prefect_server: str
) -> None:
    """The same pieces sent twice from one flow run make two runs on the server, both named by the pieces.

    Prefect numbers a flow run's task runs per task in the flow-run context, and the server hands back
    the existing run for a number it has seen; a new attempt of the same flow run counts from 0 again
    (cleared here, as that attempt's fresh context would be). No worker serves the batch; the runs are
    superseded at the end, so a worker of a later test refuses them instead of generating.
    """
    from uuid import UUID

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext
    from prefect.states import Cancelled

    from tasks.gpu_workers import SUPERSEDED, GpuWorkFollower

    @flow(name="sends-the-same-pieces-twice")
    def send_twice() -> tuple[UUID, UUID, UUID]:
        follower = GpuWorkFollower("twice")
        first = follower._submit(["twice-000", "twice-001"])
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        context.task_run_dynamic_keys.clear()
        return first, follower._submit(["twice-000", "twice-001"]), context.flow_run.id

    first, second, flow_run_id = send_twice()
    with get_client(sync_client=True) as client:
        try:
            assert first != second
            runs = [client.read_task_run(run_id) for run_id in (first, second)]
            assert runs[0].dynamic_key != runs[1].dynamic_key
            for run in runs:
                assert run.flow_run_id == flow_run_id
                assert run.name == "gpu-twice-000-x2"
                assert {"contentforge", "gpu", "batch:twice"} <= set(run.tags)
                assert run.state is not None and run.state.is_scheduled(), run.state
        finally:
            for run_id in {first, second}:
                client.set_task_run_state(run_id, Cancelled(name=SUPERSEDED), force=True)


def test_a_run_the_server_no_longer_has_is_created_again_and_followed_as_its_pieces_new_run(
    settings_env: Path, prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run gone right after its creation (its naming answered 404) is created again; a run that later
    disappears from the server's answers is sent again after two readings, not waited for forever."""
    from uuid import UUID

    from prefect import flow
    from prefect.client.orchestration import SyncPrefectClient, get_client
    from prefect.states import Cancelled

    from tasks.gpu_workers import SUPERSEDED, GpuWorkFollower

    name_run = SyncPrefectClient.set_task_run_name
    deleted: list[UUID] = []

    def deleted_before_naming(client: SyncPrefectClient, task_run_id: UUID, name: str) -> Any:
        if not deleted:  # the first run vanishes between its creation and its naming
            client._client.delete(f"/task_runs/{task_run_id}")
            deleted.append(task_run_id)
        return name_run(client, task_run_id, name)

    monkeypatch.setattr(SyncPrefectClient, "set_task_run_name", deleted_before_naming)

    @flow(name="loses-its-runs")
    def lose_runs() -> tuple[UUID, UUID, UUID, int]:
        follower = GpuWorkFollower("vanish")
        created = follower._submit(["vanish-000", "vanish-001"])
        follower.submit_all(["vanish-002"])
        (chunk,) = follower.chunks
        lost = chunk.run_id
        with get_client(sync_client=True) as client:
            client._client.delete(f"/task_runs/{lost}")
            follower._refresh(client, [chunk])
            assert follower._step(client, chunk) is False and chunk.run_id == lost, (
                "one reading is not enough"
            )
            follower._refresh(client, [chunk])
            follower._step(client, chunk)
        return created, lost, chunk.run_id, chunk.attempts

    created, lost, sent_again, attempts = lose_runs()
    with get_client(sync_client=True) as client:
        try:
            assert deleted and created != deleted[0]
            assert client.read_task_run(created).name == "gpu-vanish-000-x2"
            assert sent_again != lost and attempts == 2
            assert client.read_task_run(sent_again).name == "gpu-vanish-002-x1"
        finally:
            for run_id in (created, sent_again):
                client.set_task_run_state(run_id, Cancelled(name=SUPERSEDED), force=True)


def test_sending_again_ends_after_the_attempts_even_when_every_send_fails(settings_env: Path) -> None:
    """A send that raises still counts: a chunk whose runs keep vanishing is recorded failed after the
    attempts, instead of being sent again (three new runs each time) at every poll forever."""
    from uuid import uuid4

    from tasks.gpu_workers import GpuWorkFollower, _Chunk

    sends: list[list[str]] = []

    class FailingSends(GpuWorkFollower):
        def _submit(self, pieces: list[str]) -> Any:
            sends.append(pieces)
            raise RuntimeError("the server lost 3 runs of batch in a row")

    follower = FailingSends("lost", max_attempts=3)
    chunk = _Chunk(["lost-000"], uuid4(), time.monotonic(), missing_reads=2)
    done = [follower._step_safely(None, chunk) for _ in range(6)]  # type: ignore[arg-type]
    assert len(sends) == 2, "attempts 2 and 3; the first was the original send"
    assert done[:2] == [False, False] and done[2] is True, done
    assert chunk.attempts == 3


def test_a_run_whose_pieces_all_have_their_images_is_done_without_waiting_for_its_state(
    settings_env: Path, prefect_server: str
) -> None:
    """The batch learns from its own database that a run's images are recorded; the run's state, which
    the server records from its worker's events seconds late under load, is not waited for. No worker
    serves these runs, so their states never move: only the pieces' statuses end the wait."""
    from uuid import uuid4

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled
    from sqlalchemy import update
    from support.planned import plan_batch

    from contentforge.db.batch_progress import PieceStatusWatcher
    from contentforge.db.models import PieceORM
    from tasks import resources
    from tasks.generation_queue import generation_queue
    from tasks.gpu_workers import SUPERSEDED, GpuWorkFollower, _Chunk

    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    ids = plan_batch(repo, "imaged", 4)

    def set_status(piece_ids: list[str], status: str) -> None:
        with repo.sessions.write() as session:
            session.execute(update(PieceORM).where(PieceORM.id.in_(piece_ids)).values(status=status))

    @flow(name="follows-runs-nobody-serves")
    def follow_unserved() -> tuple[GpuWorkFollower, float]:
        follower = GpuWorkFollower("imaged", chunk_pieces=2, poll_s=0.5, pieces_poll_s=0.05)
        follower.submit_all(ids)
        set_status(ids[:2], "generated")
        set_status(ids[2:3], "ready")
        set_status(ids[3:], "failed")  # a retry of its run might still make it: that chunk waits
        (imaged, failed) = follower.chunks
        assert follower._await_poll(PieceStatusWatcher(repo.sessions, "imaged"), [imaged, failed]) == [failed]
        assert imaged.imaged and not failed.imaged
        # Pieces sent again may still be generated by the run sent in their place: that one is waited for.
        sent_again = _Chunk(ids[:2], uuid4(), time.monotonic(), attempts=2)
        assert follower._await_poll(PieceStatusWatcher(repo.sessions, "imaged"), [sent_again]) == [sent_again]

        # The failed piece made after all (a retry of its run), before the batch follows its runs: the
        # follow sees every image recorded at its first read.

        set_status(ids[3:], "generated")  # made after all, so the whole batch is done
        started = time.monotonic()
        # Bounded: waiting for the runs' states would wait forever; stopping the batch ends that wait.
        give_up = threading.Timer(10, generation_queue().stop, args=("imaged",))
        give_up.start()
        try:
            follower.follow()
        finally:
            give_up.cancel()
            generation_queue().resume("imaged")
        return follower, time.monotonic() - started

    follower, waited = follow_unserved()
    with get_client(sync_client=True) as client:
        try:
            assert waited < 5, waited
            assert follower.outcome == Counter({"runs with every image stored": 2}), follower.outcome
            for chunk in follower.chunks:
                run = client.read_task_run(chunk.run_id)
                # Returned while the runs still waited for a worker: no state of theirs ended the wait.
                assert run.state is not None and run.state.is_scheduled(), run.state
        finally:
            for chunk in follower.chunks:
                client.set_task_run_state(chunk.run_id, Cancelled(name=SUPERSEDED), force=True)


def _assert_superseded_runs_were_sent_again(batch_id: str, resent: list[str]) -> None:
    """The server lists at least one of the batch's GPU runs ``Superseded``, each next to the run its
    pieces were sent again as, which completed (following the chain if that one was superseded too).

    The batch's log names each pair ("sent again as run NEW (was OLD)"); a run sent again has the same
    pieces, so the UI shows both under the same name (``gpu-FIRSTPIECE-xN``), whether or not a worker
    started the superseded one.
    """
    import re
    from uuid import UUID

    from tasks.gpu_workers import SUPERSEDED

    runs = {run.id: (run, states) for run, states in _batch_runs(batch_id)}
    listed = [(run.name, run.dynamic_key, [state.name for state in states]) for run, states in runs.values()]
    pairs = [re.search(r"as run (\S+) \(was (\S+)\)", message) for message in resent]
    sent_as = {UUID(pair[2]): UUID(pair[1]) for pair in pairs if pair is not None}
    superseded = [
        run
        for run, states in runs.values()
        if SUPERSEDED in {state.name for state in states} | {run.state.name if run.state else None}
    ]
    assert superseded, ("no superseded run on the server", listed, resent)
    assert set(sent_as) <= set(runs), ("a superseded run is missing on the server", listed, resent)
    for run in superseded:
        successor = run.id
        while successor in sent_as:
            successor = sent_as[successor]
        assert successor != run.id, (
            "a superseded run's pieces were not sent again",
            run.name,
            listed,
            resent,
        )
        assert successor in runs, ("the run sent in a superseded one's place is not on the server", listed)
        final, _ = runs[successor]
        assert final.state is not None and final.state.is_completed(), (final.name, final.state, listed)
        assert run.name.startswith("gpu-") and final.name == run.name, ("named by its pieces", listed)
