"""``contentforge up`` / ``down``: a local cluster of Prefect server, cpu and gpu workers and the API.

Each service is a detached process with a pid file and a log under ``<data_dir>/run``, so the stack
outlives the command that started it and ``down`` (or a later ``up``) finds it again. The server's
state lives in ``PREFECT_HOME`` (SQLite by default, PostgreSQL with
``CONTENTFORGE_PREFECT_DATABASE_URL``), so deployments, runs and limits survive a restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    env: dict[str, str]


def _executable(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def worker_services(api_url: str, cpu_pool: str, gpu_pool: str, gpu_deployment: str | None) -> list[Service]:
    """The cpu and gpu process workers; the cpu worker's batches send their GPU stage to the gpu pool."""
    base = dict(os.environ, PREFECT_API_URL=api_url)
    cpu_env = dict(base)
    if gpu_deployment:
        cpu_env["CONTENTFORGE_GPU_DEPLOYMENT"] = gpu_deployment
    prefect = _executable("prefect")
    return [
        Service(
            "cpu-worker",
            [
                prefect,
                "worker",
                "start",
                "--pool",
                cpu_pool,
                "--type",
                "process",
                "--name",
                "contentforge-cpu",
            ],
            cpu_env,
        ),
        Service(
            "gpu-worker",
            [
                prefect,
                "worker",
                "start",
                "--pool",
                gpu_pool,
                "--type",
                "process",
                "--name",
                "contentforge-gpu",
            ],
            base,
        ),
    ]


def pid_of(run_dir: Path, name: str) -> int | None:
    """The pid of a running service started from ``run_dir``, or None."""
    pid_file = run_dir / f"{name}.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return None
    return pid


def start(run_dir: Path, service: Service) -> tuple[int, bool]:
    """Start ``service`` detached unless it already runs; returns (pid, started)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    running = pid_of(run_dir, service.name)
    if running is not None:
        return running, False
    log = (run_dir / f"{service.name}.log").open("ab")
    process = subprocess.Popen(
        service.command,
        env=service.env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (run_dir / f"{service.name}.pid").write_text(str(process.pid))
    time.sleep(0.5)
    if process.poll() is not None:
        raise RuntimeError(
            f"{service.name} exited with code {process.returncode}; see {run_dir}/{service.name}.log"
        )
    return process.pid, True


def stop(run_dir: Path, name: str, grace_s: float = 10.0) -> bool:
    """Stop a service started by ``start``; False if it was not running."""
    pid = pid_of(run_dir, name)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)
    (run_dir / f"{name}.pid").unlink(missing_ok=True)
    return True


def deploy_all() -> dict[str, str]:
    """Register every deployment of ``prefect.yaml`` on the connected server (idempotent)."""
    from contentforge_cli.deploy import apply_deployments

    return apply_deployments()
