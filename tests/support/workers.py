"""A real ``cpu`` process worker over prefect.yaml's deployments, as ``contentforge up`` starts it.

For tests that start jobs through the API and need something to run them: pools, queues and
deployments are applied to the session's Prefect server, and one worker runs the ``cpu`` pool's flow
runs in its own processes with the test's data directory (the GPU stage stays in-process).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
