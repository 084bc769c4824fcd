"""``contentforge up`` / ``down``: a local cluster of Prefect server, cpu and gpu workers and the API.

``contentforge bootstrap`` and ``deploy`` are the first two steps of ``up`` on their own.

Each service is a detached process with a pid file and a log under ``<data_dir>/run``, so the stack
outlives the command that started it and ``down`` (or a later ``up``) finds it again. The server's
state lives in ``PREFECT_HOME`` (SQLite by default, PostgreSQL with
``CONTENTFORGE_PREFECT_DATABASE_URL``), so deployments, runs and limits survive a restart.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from contentforge_cli import context
from contentforge_cli.context import console, fail

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
    """The cpu and gpu process workers; the cpu worker's batches send their GPU stage to the gpu pool.

    The cpu worker is ContentForge's own (flow runs forked from preloaded code, ``cpu_worker.py``); the
    gpu pool's is Prefect's, since each GPU stage is a process that loads its model anyway."""
    base = dict(os.environ, PREFECT_API_URL=api_url)
    cpu_env = dict(base)
    if gpu_deployment:
        cpu_env["CONTENTFORGE_GPU_DEPLOYMENT"] = gpu_deployment
    prefect = _executable("prefect")
    return [
        Service(
            "cpu-worker",
            [_executable("contentforge"), "cpu-worker", "--pool", cpu_pool, "--name", "contentforge-cpu"],
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
    if not _alive(pid):
        pid_file.unlink(missing_ok=True)
        return None
    return pid


def _group_alive(pgid: int) -> bool:
    """Whether any process of the service's process group still runs (it leads a session of its own)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs. A service this process started and that has exited is a zombie until
    reaped, and ``kill(pid, 0)`` succeeds on a zombie: so it is reaped here first, else ``stop`` waited
    its whole grace period for a process that had exited at once (10 s per service in the tests)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not this process's child: its own parent (or init) reaps it
        reaped = 0
    if reaped == pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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
        # The service and its group (the cpu worker's fork server); flow runs lead groups of their own,
        # which the worker stops as it shuts down, as Prefect's process worker does.
        if not _alive(pid) and not _group_alive(pid):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    (run_dir / f"{name}.pid").unlink(missing_ok=True)
    return True


def deploy_all() -> dict[str, str]:
    """Register every deployment of ``prefect.yaml`` on the connected server (idempotent)."""
    from contentforge_cli.deploy import apply_deployments

    return apply_deployments()


# --- the commands ---------------------------------------------------------------------------------

app = typer.Typer()  # top-level commands: bootstrap, deploy, up, down


@app.command()
def bootstrap(
    gpu_worker_type: Annotated[
        str, typer.Option(help="Worker type of the gpu pool: process, docker or kubernetes.")
    ] = "process",
) -> None:
    """Create the concurrency limits, the cpu and gpu work pools and their queues (idempotent)."""
    from contentforge_cli.runtime import connect

    if gpu_worker_type not in ("process", "docker", "kubernetes"):
        fail(f"unknown gpu worker type {gpu_worker_type!r}; use process, docker or kubernetes")
    settings = context.settings()
    connect(settings)
    from tasks.bootstrap import bootstrap_cluster

    for what, outcome in bootstrap_cluster(settings, gpu_worker_type).items():
        console.print(f"{what}: {outcome}")


@app.command()
def deploy() -> None:
    """Register (or update) every deployment of prefect.yaml on the Prefect server."""
    from contentforge_cli.runtime import connect

    connect(context.settings())
    for name, deployment_id in deploy_all().items():
        console.print(f"deployment {name}: {deployment_id}")


@app.command()
def up(
    api: Annotated[bool, typer.Option(help="Also serve the ContentForge API on 127.0.0.1:8000.")] = True,
) -> None:
    """Start the local stack: Prefect server, pools and deployments, a cpu and a gpu worker, the API
    (and a warm GPU task worker when CONTENTFORGE_GPU_TASK_WORKERS is set).

    Batches started on the cpu pool run their GPU stage as the generate-images deployment on the gpu
    pool. Everything is detached and survives this command; `contentforge down` stops it.
    """
    from contentforge_cli.runtime import connect

    settings = context.settings()
    server = connect(settings)
    from tasks.bootstrap import bootstrap_cluster

    for what, outcome in bootstrap_cluster(settings).items():
        console.print(f"{what}: {outcome}")
    deploy_all()
    run_dir = settings.data_dir / "run"
    gpu_deployment = settings.gpu_deployment or "generate-images/generate-images"
    services = worker_services(server.api_url, settings.cpu_pool, settings.gpu_pool, gpu_deployment)
    if settings.gpu_task_workers:
        # Batches send their pieces to warm GPU workers instead of the gpu pool's deployment: start one.
        from contentforge_cli.gpu_worker import gpu_worker_service

        services.append(gpu_worker_service(server.api_url))
    if api:
        api_env = dict(os.environ, PREFECT_API_URL=server.api_url)
        command = [sys.executable, "-m", "contentforge_cli.main", "api", "serve"]
        if settings.api_token is None:
            console.print("CONTENTFORGE_API_TOKEN is not set: the API serves loopback only, without auth")
            command.append("--insecure-local")
        services.append(Service("api", command, api_env))
    for service in services:
        pid, started = start(run_dir, service)
        console.print(f"{service.name}: pid {pid} ({'started' if started else 'already running'})")
    console.print(f"Prefect UI: {server.ui_url}", soft_wrap=True)
    console.print(f"Logs: {run_dir}")


@app.command()
def down(
    server: Annotated[bool, typer.Option(help="Also stop the Prefect server.")] = True,
) -> None:
    """Stop what `contentforge up` started (state stays in the data directory for the next `up`)."""
    from contentforge_cli.server import stop_server

    settings = context.settings()
    run_dir = settings.data_dir / "run"
    for name in ("api", "gpu-task-worker", "gpu-worker", "cpu-worker"):
        console.print(f"{name}: {'stopped' if stop(run_dir, name) else 'not running'}")
    if server:
        console.print(f"prefect server: {'stopped' if stop_server(settings.prefect_home) else 'not running'}")
