"""A real ``cpu`` process worker over prefect.yaml's deployments, as ``contentforge up`` starts it.

For tests that start jobs through the API and need something to run them: pools, queues and
deployments are applied to the session's Prefect server, and one worker runs the ``cpu`` pool's flow
runs in its own processes with the test's data directory (the GPU stage stays in-process).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def cpu_worker(api_url: str, data_dir: Path, run_dir: Path, **env: str) -> Iterator[Path]:
    """Bootstrap, deploy, start the worker with ``env`` added; yields the folder holding its log."""
    from contentforge.config import get_settings
    from contentforge_cli.stack import deploy_all, start, stop, worker_services
    from tasks.bootstrap import bootstrap_cluster

    bootstrap_cluster(get_settings())
    deploy_all()
    (cpu,) = [s for s in worker_services(api_url, "cpu", "gpu", None) if s.name == "cpu-worker"]
    cpu.env.pop("CONTENTFORGE_GPU_DEPLOYMENT", None)
    cpu.env.update(
        {
            "CONTENTFORGE_DATA_DIR": str(data_dir),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "PREFECT_LOGGING_LEVEL": "INFO",
            **env,
        }
    )
    start(run_dir, cpu)
    try:
        yield run_dir
    finally:
        stop(run_dir, cpu.name)


def worker_logs(run_dir: Path) -> dict[str, str]:
    """The end of each service log, for assertion messages."""
    return {path.name: path.read_text()[-3000:] for path in run_dir.glob("*.log")}


def wait_final(flow_run_id: Any, timeout_s: float, poll_s: float = 0.5) -> Any:
    """The flow run once its state is final; fails the test after ``timeout_s``."""
    import time

    import pytest
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(poll_s)
    pytest.fail(f"flow run {flow_run_id} did not finish within {timeout_s:.0f} s")
