"""Start or reuse one real local ``prefect server``; ``contentforge server start`` / ``stop``.

Why not Prefect's ephemeral mode: it starts a server inside every process (~14 s each) and its
SQLite database locks under concurrent load. One long-lived server on 127.0.0.1 serves the demo,
the tests, the benchmark and the UI, and keeps run history between runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import typer

from contentforge_cli import context
from contentforge_cli.context import console


@dataclass(frozen=True)
class LocalServer:
    """A running local Prefect server: where its API and UI are, and its process id if we started it."""

    api_url: str
    ui_url: str
    pid: int | None
    started: bool


def api_url_for(host: str, port: int) -> str:
    return f"http://{host}:{port}/api"


def is_healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


SQLITE_SERVER_SETTINGS = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "10",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}
"""Record task-run states ten at a time (or after a second), on the SQLite-backed server.

Why: SQLite takes one writer at a time, and Prefect's task-run recorder writes every task-run state
change (three per task) in a transaction of its own by default: three batches of 50 pieces made some
25 a second, each one a turn at the write lock that slot requests, flow-run creations and artifact
updates wait for too (``contentforge_cli/sqlite_server.py`` makes them wait rather than fail). Ten at a
time, a busy server writes them in a tenth of the transactions, while a quiet one shows a task's state
at most a second late (a state read through the API, such as a GPU task worker's, lags as much).
A PostgreSQL-backed server takes concurrent writers and keeps Prefect's defaults.
"""


def server_environment(prefect_home: Path, database_url: str | None = None) -> dict[str, str]:
    """Environment for the server process: its own PREFECT_HOME, no telemetry, optionally PostgreSQL.

    ``database_url`` (``postgresql+asyncpg://…``) puts the server's state in PostgreSQL, which is
    what several workers on several machines need; the default is SQLite in PREFECT_HOME.
    """
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(prefect_home.resolve()),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
    )
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    else:
        for name, value in SQLITE_SERVER_SETTINGS.items():
            env.setdefault(name, value)  # what the user set for the server wins
    env.pop("PREFECT_API_URL", None)
    return env


def server_command(database_url: str | None) -> list[str]:
    """``prefect server start``; on SQLite through ``contentforge_cli.sqlite_server``, whose write
    transactions wait for the lock instead of failing with "database is locked" (it says why)."""
    if not database_url:
        return [sys.executable, "-m", "contentforge_cli.sqlite_server"]
    prefect_cli = Path(sys.executable).with_name("prefect")
    if prefect_cli.exists():
        return [str(prefect_cli), "server", "start"]
    return [sys.executable, "-m", "prefect", "server", "start"]


def ensure_server(
    prefect_home: Path,
    host: str = "127.0.0.1",
    port: int = 4200,
    wait_s: float = 120.0,
    database_url: str | None = None,
) -> LocalServer:
    """Reuse a healthy server on host:port, or start one detached and wait until it answers."""
    api_url = api_url_for(host, port)
    ui_url = f"http://{host}:{port}"
    pid_file = prefect_home / "server.pid"
    if is_healthy(api_url):
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        return LocalServer(api_url, ui_url, pid, started=False)
    prefect_home.mkdir(parents=True, exist_ok=True)
    log = (prefect_home / "server.log").open("ab")
    process = subprocess.Popen(
        [*server_command(database_url), "--host", host, "--port", str(port)],
        env=server_environment(prefect_home, database_url),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # outlives the command that started it, so the UI stays up
    )
    pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"prefect server exited with code {process.returncode}; see {prefect_home / 'server.log'}"
            )
        if is_healthy(api_url):
            return LocalServer(api_url, ui_url, process.pid, started=True)
        time.sleep(0.5)
    process.terminate()
    raise TimeoutError(f"prefect server did not answer on {api_url} within {wait_s:.0f} s")


def stop_server(prefect_home: Path) -> bool:
    """Stop the server started from this PREFECT_HOME; False if none was recorded or running."""
    pid_file = prefect_home / "server.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    return True


# --- the commands ---------------------------------------------------------------------------------

app = typer.Typer(help="The local Prefect server.", no_args_is_help=True)


@app.command("start")
def server_start() -> None:
    """Start (or reuse) the local Prefect server."""
    settings = context.settings()
    server = ensure_server(
        settings.prefect_home, port=settings.prefect_port, database_url=settings.prefect_database_url
    )
    console.print(f"Prefect UI: {server.ui_url} ({'started' if server.started else 'already running'})")


@app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server started by ContentForge."""
    stopped = stop_server(context.settings().prefect_home)
    console.print("stopped" if stopped else "no server recorded")
