"""Helpers for the process-level fault tests: run ``contentforge`` in a child process against the
session's Prefect server, kill it at a fault point (``contentforge.faults``), read what it left.

Runs use the labelled fixed-latency image backend (no model), a short batch lease so a resume can
take a killed run's batch over within seconds, and Prefect's minimum heartbeat period (30 s).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 6
"""Batch lease of the child runs: a resume after a kill waits at most this long."""
CRASH_WINDOW_S = 40
"""The crash automation's window while these tests run: more than the 30 s heartbeat period, so a
live child run is never crashed, and as short as that allows."""


def cli_env(data_dir: Path, api_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTFORGE_FAULT")}
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "CONTENTFORGE_DATA_DIR": str(data_dir),
            "CONTENTFORGE_IMAGE_PROFILE": "fixed-latency",
            "CONTENTFORGE_FIXED_LATENCY_S": "0.2",
            "CONTENTFORGE_BATCH_LEASE_S": str(LEASE_S),
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "COLUMNS": "400",
        }
    )
    env.update(extra)
    return env


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "contentforge_cli.main", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout_s: float = 240) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"contentforge did not finish within {timeout_s} s:\n{output[-3000:]}") from None
    return process.returncode, output


def run_cli(args: list[str], env: dict[str, str], timeout_s: float = 240) -> tuple[int, str]:
    return finish(start_cli(args, env), timeout_s)


def killed(returncode: int) -> bool:
    return returncode == -signal.SIGKILL


def database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'contentforge.db'}"


def query(data_dir: Path, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url(data_dir))
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()


def repository(data_dir: Path) -> Any:
    from contentforge.db import Repository, make_engine, migrate

    migrate(database_url(data_dir))
    return Repository(make_engine(database_url(data_dir)))


def child_runs(flow_run_id: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
            ),
            sort=FlowRunSort.START_TIME_ASC,
            limit=20,
        )


def wait_for_states(
    flow_run_ids: list[str], until: Callable[[Any], bool], timeout_s: float, poll_s: float = 2.0
) -> dict[str, Any]:
    """Poll the runs until every state satisfies ``until``; returns run id -> state (last seen)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            states = {run_id: client.read_flow_run(run_id).state for run_id in flow_run_ids}
            if all(state is not None and until(state) for state in states.values()):
                return states
            if time.monotonic() > deadline:
                return states
            time.sleep(poll_s)


@contextmanager
def crash_window(seconds: int) -> Iterator[None]:
    """The real crash automation (from the bootstrap) with a window of ``seconds``; restored after."""
    from contentforge.config import get_settings
    from tasks.bootstrap import ensure_crash_automation

    settings = get_settings()
    ensure_crash_automation(settings.model_copy(update={"crash_after_s": seconds}))
    try:
        yield
    finally:
        ensure_crash_automation(settings)
