"""``contentforge gpu-worker``: a long-lived GPU process that keeps the model loaded across batches.

Distributed mode with ``CONTENTFORGE_GPU_TASK_WORKERS=true`` sends every batch's pieces to these
processes as Prefect background task runs (``tasks/gpu_workers.py``); start one per GPU. Each loads
its model once, before the first run, and logs each load ("model load N"), so a log shows loads per
worker.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from contentforge_cli import context
from contentforge_cli.context import console, fail

app = typer.Typer()


@app.command("gpu-worker")
def gpu_worker(
    runs: Annotated[
        int | None,
        typer.Option(min=1, help="Background runs taken at once; default twice this process's slots."),
    ] = None,
) -> None:
    """Serve the batches' image generations on this machine's GPU until stopped (Ctrl-C, SIGTERM)."""
    from contentforge_cli.runtime import connect

    settings = context.settings()
    try:
        server = connect(settings)  # Prefect is imported after it
    except RuntimeError as exc:  # a PREFECT_API_URL that does not answer
        fail(str(exc))
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    worker_logger = logging.getLogger("tasks.gpu_workers")
    worker_logger.setLevel(logging.INFO)
    worker_logger.addHandler(handler)
    console.print(f"GPU worker on Prefect API {server.api_url}", highlight=False)
    from tasks.gpu_workers import serve_gpu_worker

    serve_gpu_worker(runs)
