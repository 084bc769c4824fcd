"""``contentforge cpu-worker``: flow runs forked from a preloaded interpreter keep the process worker's
promises (the job's environment and pull steps, crash detection, cancellation of the whole run).

One worker, started as ``contentforge up`` starts it, serves a pool of its own on the session's Prefect
server; a probe flow (``tests/support/probe_flow.py``) reports the process it ran in.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def probe_deployment(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A process pool of its own, the probe flow deployed on it, ``contentforge cpu-worker`` serving it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from contentforge_cli.stack import start, stop, worker_services
    from tests.support.probe_flow import probe

    pool = f"probe-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        flow_id = client.create_flow(probe)
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name="probe",
            entrypoint="tests/support/probe_flow.py:probe",
            work_pool_name=pool,
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}],
            job_variables={"env": {"CONTENTFORGE_PROBE_JOB_ENV": "from the job's variables"}},
        )
    run_dir = tmp_path_factory.mktemp("probe-worker")
    (cpu,) = [s for s in worker_services(prefect_server, pool, "unused", None) if s.name == "cpu-worker"]
    cpu.env.update(PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="5")
    start(run_dir, cpu)
    try:
        yield str(deployment_id)
    finally:
        stop(run_dir, cpu.name)


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
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(0.5)
    pytest.fail(f"flow run {flow_run_id} did not end within {timeout_s:.0f} s")


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


def test_a_run_whose_process_dies_is_marked_crashed(probe_deployment: str, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    run = _run_probe(probe_deployment, report, hold_s=120)
    facts = _wait_for_report(report)
    os.kill(facts["pid"], signal.SIGKILL)
    final = _wait_final(run.id)
    assert final.state.is_crashed(), final.state
    os.kill(facts["child_pid"], signal.SIGKILL)  # an orphan of the killed run; not the worker's to stop


def test_cancelling_a_run_stops_its_process_and_what_it_started(
    probe_deployment: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    report = tmp_path / "report.json"
    run = _run_probe(probe_deployment, report, hold_s=120)
    facts = _wait_for_report(report)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(), force=True)
    final = _wait_final(run.id)
    assert final.state.is_cancelled(), final.state
    assert _gone(facts["pid"]), "the run's process was stopped"
    assert _gone(facts["child_pid"]), "so was the process it started (its process group)"


@pytest.mark.parametrize(
    ("environment", "poll_s", "expected"),
    [({}, None, 2.0), ({"PREFECT_WORKER_QUERY_SECONDS": "7"}, None, None), ({}, 0.5, 0.5)],
)
def test_the_worker_asks_for_runs_every_two_seconds_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], poll_s: float | None, expected: float | None
) -> None:
    """Prefect's default (10 s) would leave a batch asked for waiting 5 s on average before it starts."""
    from prefect.settings import PREFECT_WORKER_QUERY_SECONDS

    from contentforge_cli import preloaded_worker

    monkeypatch.delenv("PREFECT_WORKER_QUERY_SECONDS", raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    seen: list[float] = []
    monkeypatch.setattr(preloaded_worker, "fork_server", lambda modules: None)
    monkeypatch.setattr("prefect.utilities.processutils.setup_signal_handlers_worker", lambda *args: None)
    monkeypatch.setattr(
        preloaded_worker.anyio, "run", lambda work: seen.append(PREFECT_WORKER_QUERY_SECONDS.value())
    )
    before = PREFECT_WORKER_QUERY_SECONDS.value()
    preloaded_worker.serve("a-pool", "a-worker", poll_s=poll_s)
    assert seen == [expected if expected is not None else before]
    assert PREFECT_WORKER_QUERY_SECONDS.value() == before, "only while the worker serves"
