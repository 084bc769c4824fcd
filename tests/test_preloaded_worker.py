"""``contentforge cpu-worker``: flow runs forked from a preloaded interpreter keep the process worker's
promises (the job's environment and pull steps, crash detection, cancellation of the whole run).

One worker, started as ``contentforge up`` starts it, serves a pool of its own on the session's Prefect
server; a probe flow (``tests/support/probe_flow.py``) reports the process it ran in.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.workers import wait_final

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def _probe_pool(prefect_server: str, run_dir: Path, query_seconds: str) -> Iterator[tuple[str, str]]:
    """A process pool of its own, the probe flow deployed on it, ``contentforge cpu-worker`` serving it
    with Prefect's poll interval set to ``query_seconds``; yields the pool and the deployment's id."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from support.probe_flow import probe

    from contentforge_cli.stack import start, stop, worker_services

    pool = f"probe-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        flow_id = client.create_flow(probe)
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name=pool,  # a deployment of its own: the same flow and name would move the other pool's
            entrypoint="tests/support/probe_flow.py:probe",
            work_pool_name=pool,
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}],
            job_variables={
                "env": {
                    "CONTENTFORGE_PROBE_JOB_ENV": "from the job's variables",
                    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "45",
                }
            },
        )
    (cpu,) = [s for s in worker_services(prefect_server, pool, "unused", None) if s.name == "cpu-worker"]
    cpu.env.update(PREFECT_WORKER_QUERY_SECONDS=query_seconds, PREFECT_WORKER_PREFETCH_SECONDS="5")
    start(run_dir, cpu)
    try:
        yield pool, str(deployment_id)
    finally:
        stop(run_dir, cpu.name)


@pytest.fixture(scope="module")
def probe_deployment(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The probe's deployment on a pool of its own, served by a worker polling every second."""
    with _probe_pool(prefect_server, tmp_path_factory.mktemp("probe-worker"), query_seconds="1") as (
        _pool,
        deployment_id,
    ):
        yield deployment_id


def _run_probe(deployment_id: str, report: Path, hold_s: float) -> Any:
    from prefect.deployments import run_deployment

    return run_deployment(deployment_id, parameters={"report": str(report), "hold_s": hold_s}, timeout=0)


def _wait_for_report(report: Path, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if report.exists() and report.read_text():
            return json.loads(report.read_text())
        time.sleep(0.2)
    pytest.fail(f"the probe never reported to {report}")


def _wait_final(flow_run_id: Any, timeout_s: float = 120) -> Any:
    return wait_final(flow_run_id, timeout_s)


def _kill_group(group: int) -> None:
    """What a failed test would leave running: the run is in a session of its own, out of stop()'s reach."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def _gone(pid: int, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_a_flow_run_is_forked_from_the_preloaded_server_with_its_jobs_directory_and_environment(
    probe_deployment: str, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    run = _run_probe(probe_deployment, report, hold_s=0)
    final = _wait_final(run.id)
    assert final.state.is_completed(), final.state
    facts = json.loads(report.read_text())
    assert "forkserver" in facts["parent_command"], facts  # not a fresh `python -m prefect.engine`
    assert facts["preloaded_flow_module"], "the fork server imported the flows before the run"
    assert facts["process_group"] == facts["pid"], "each run leads a process group of its own"
    assert facts["job_env"] == "from the job's variables"
    assert facts["cwd"] == str(ROOT), "the deployment's pull step ran in the run's process"
    assert facts["thread_heartbeat_s"] == 45, "a thread without the run's context reads the job's settings"
    exit_mark = Path(str(report) + ".exit")  # written as the process ends, after the run's final state
    deadline = time.monotonic() + 30
    while not exit_mark.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert exit_mark.exists(), "the run's exit handlers ran (the fork server's os._exit skips them)"


def test_a_run_asked_for_starts_at_once_not_at_the_workers_next_poll(
    prefect_server: str, tmp_path: Path
) -> None:
    """The worker hears of a run scheduled on its pool from the server's event stream: with a poll of
    ten minutes the run still starts within seconds (it would wait for the poll without the events)."""
    from prefect.client.orchestration import get_client

    with _probe_pool(prefect_server, tmp_path / "worker", query_seconds="600") as (pool, deployment_id):
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while not any(
                worker.status == "ONLINE"
                for worker in client.read_workers_for_work_pool(work_pool_name=pool, limit=5, offset=0)
            ):
                assert time.monotonic() < deadline, "the worker never came online"
                time.sleep(0.5)
        # Past the worker's first poll, which runs as it starts (before or just after its first sync,
        # which sets it ONLINE); the next is ten minutes away.
        time.sleep(2)
        report = tmp_path / "report.json"
        asked = time.monotonic()
        run = _run_probe(deployment_id, report, hold_s=0)
        _wait_for_report(report, timeout_s=60)
        assert time.monotonic() - asked < 20, "started late: by a poll, not by the Scheduled event"
        assert _wait_final(run.id).state.is_completed()


def test_a_run_whose_process_dies_is_marked_crashed(probe_deployment: str, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    run = _run_probe(probe_deployment, report, hold_s=120)
    facts = _wait_for_report(report)
    try:
        os.kill(facts["pid"], signal.SIGKILL)
        final = _wait_final(run.id)
        assert final.state.is_crashed(), final.state
    finally:
        _kill_group(facts["process_group"])  # the killed run's own child; not the worker's to stop


def test_cancelling_a_run_stops_its_process_and_what_it_started(
    probe_deployment: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    report = tmp_path / "report.json"
    run = _run_probe(probe_deployment, report, hold_s=120)
    facts = _wait_for_report(report)
    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling(), force=True)
        final = _wait_final(run.id)
        assert final.state.is_cancelled(), final.state
        assert _gone(facts["pid"]), "the run's process was stopped"
        assert _gone(facts["child_pid"]), "so was the process it started (its process group)"
    finally:
        _kill_group(facts["process_group"])


@pytest.mark.parametrize(
    ("configured", "poll_s", "expected"),
    [(None, None, 2.0), (7.0, None, 7.0), (None, 0.5, 0.5)],
)
def test_the_worker_asks_for_runs_every_two_seconds_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, configured: float | None, poll_s: float | None, expected: float
) -> None:
    """Prefect's default (10 s) would leave a batch asked for waiting 5 s on average before it starts;
    a value set in Prefect's settings (environment, profile, prefect.toml) or ``--poll-s`` wins."""
    from prefect.settings import PREFECT_WORKER_QUERY_SECONDS, temporary_settings

    from contentforge_cli import preloaded_worker

    seen: list[float] = []
    monkeypatch.setattr(preloaded_worker, "fork_server", lambda modules: None)
    monkeypatch.setattr("prefect.utilities.processutils.setup_signal_handlers_worker", lambda *args: None)
    monkeypatch.setattr(
        preloaded_worker.anyio, "run", lambda work: seen.append(PREFECT_WORKER_QUERY_SECONDS.value())
    )
    settings = temporary_settings({PREFECT_WORKER_QUERY_SECONDS: configured}) if configured else None
    with settings or contextlib.nullcontext():
        before = PREFECT_WORKER_QUERY_SECONDS.value()
        preloaded_worker.serve("a-pool", "a-worker", poll_s=poll_s)
        assert seen == [expected]
        assert PREFECT_WORKER_QUERY_SECONDS.value() == before, "only while the worker serves"


def test_a_run_outlives_its_fork_server_and_the_next_run_gets_a_new_one(
    probe_deployment: str, tmp_path: Path
) -> None:
    """Losing the fork server (killed, out of memory) leaves its children running with exit codes nobody
    can read: the run is judged when it ends, not marked Crashed while it runs (a batch's crash hook
    would free a batch still producing), and the next run starts from a fork server started again."""
    from prefect.client.orchestration import get_client

    report = tmp_path / "report.json"
    run = _run_probe(probe_deployment, report, hold_s=4)
    facts = _wait_for_report(report)
    try:
        os.kill(facts["parent_pid"], signal.SIGKILL)  # the fork server
        final = _wait_final(run.id)
        with get_client(sync_client=True) as client:
            history = [state.name for state in client.read_flow_run_states(run.id)]
        assert final.state.is_completed(), history
        assert "Crashed" not in history, history
    finally:
        _kill_group(facts["process_group"])

    again = tmp_path / "again.json"
    second = _run_probe(probe_deployment, again, hold_s=0)
    assert _wait_final(second.id).state.is_completed()
    assert json.loads(again.read_text())["parent_pid"] != facts["parent_pid"]


@pytest.mark.parametrize("command", ["cpu-worker", "gpu-worker"])
def test_a_worker_asked_to_use_a_server_that_does_not_answer_says_so_in_one_line_before_starting(
    monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    from typer.testing import CliRunner

    from contentforge_cli import preloaded_worker
    from contentforge_cli.main import app

    started: list[str] = []
    monkeypatch.setattr(preloaded_worker, "fork_server", lambda modules: started.append("fork server"))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    result = CliRunner().invoke(app, [command])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: PREFECT_API_URL=http://127.0.0.1:9/api does not answer; unset it to use a local server"
    ]
    assert started == []


def test_a_flow_module_the_fork_server_cannot_import_fails_the_workers_start() -> None:
    """The fork server skips a module that raises ImportError without a word; the worker must not
    start serving runs that would then import it again, or fail, one by one."""
    from contentforge_cli.preloaded_worker import fork_server

    with pytest.raises(RuntimeError, match="could not import the flows"):
        fork_server(["prefect.engine", "flows.no_such_flow_module"])


def test_a_run_already_running_here_that_comes_back_in_a_stale_answer_is_not_taken_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An answer read just before a run's Pending state landed can list it once its process started:
    Prefect would take a slot of the limit again for it and raise ``RuntimeError``, ending the worker."""
    import multiprocessing

    import anyio
    from prefect.client.schemas.objects import FlowRun
    from prefect.client.schemas.responses import WorkerFlowRunResponse

    from contentforge_cli.preloaded_worker import PreloadedProcessWorker

    def answer(run_id: uuid.UUID) -> WorkerFlowRunResponse:
        run = FlowRun(id=run_id, flow_id=uuid.uuid4(), name=f"run-{run_id.hex[:6]}")
        return WorkerFlowRunResponse(work_pool_id=uuid.uuid4(), work_queue_id=uuid.uuid4(), flow_run=run)

    async def scenario() -> tuple[list[uuid.UUID], list[uuid.UUID], uuid.UUID, uuid.UUID]:
        worker = PreloadedProcessWorker(
            name="w", work_pool_name="p", limit=3, context=multiprocessing.get_context("forkserver")
        )
        worker._limiter = anyio.CapacityLimiter(3)  # as the worker's start makes it
        running, new = uuid.uuid4(), uuid.uuid4()
        worker._limiter.acquire_on_behalf_of_nowait(running)  # its process started: no longer submitting
        started: list[uuid.UUID] = []

        async def submit_run(flow_run: FlowRun) -> None:
            started.append(flow_run.id)

        monkeypatch.setattr(worker, "_submit_run", submit_run)
        async with anyio.create_task_group() as group:
            worker._runs_task_group = group
            submitted = await worker._submit_scheduled_flow_runs([answer(running), answer(new)])
        return [run.id for run in submitted], started, running, new

    submitted, started, running, new = anyio.run(scenario)
    assert submitted == [new] and started == [new]
    assert running not in started
