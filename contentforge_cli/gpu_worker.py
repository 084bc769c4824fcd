"""``contentforge gpu-worker``: a long-lived GPU process that keeps the model loaded across batches.

Distributed mode with ``CONTENTFORGE_GPU_TASK_WORKERS=true`` sends every batch's pieces to these
processes as Prefect background task runs (``tasks/gpu_workers.py``); start one per GPU. Each loads
its model once, before the first run, and logs each load ("model load N"), so a log shows loads per
worker.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from contentforge_cli import context
from contentforge_cli.context import console
from contentforge_cli.stack import Service

app = typer.Typer()


@app.command("gpu-worker")
def gpu_worker(
    runs: Annotated[
        int | None,
        typer.Option(min=1, help="Background runs taken at once; default twice this process's slots."),
    ] = None,
) -> None:
    """Serve the batches' image generations on this machine's GPU until stopped (Ctrl-C, SIGTERM)."""
    from contentforge_cli.runtime import connect_or_fail

    settings = context.settings()
    server = connect_or_fail(settings)  # Prefect is imported after it
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    worker_logger = logging.getLogger("tasks.gpu_workers")
    worker_logger.setLevel(logging.INFO)
    worker_logger.addHandler(handler)
    console.print(f"GPU worker on Prefect API {server.api_url}", highlight=False)
    from tasks.gpu_workers import serve_gpu_worker

    serve_gpu_worker(runs)


def gpu_worker_service(api_url: str, name: str = "gpu-task-worker", runs: int | None = None) -> Service:
    """``contentforge gpu-worker`` as a detached service for ``contentforge_cli.stack.start`` and ``stop``."""
    executable = Path(sys.executable).with_name("contentforge")
    command = [str(executable) if executable.exists() else "contentforge", "gpu-worker"]
    if runs:
        command += ["--runs", str(runs)]
    return Service(name, command, dict(os.environ, PREFECT_API_URL=api_url))
