"""``contentforge cpu-worker``: the cpu pool's worker, starting each flow run from preloaded code.

``contentforge up`` starts it; it serves any ``process`` pool the way ``prefect worker start --type
process`` does, but forks each flow run from an interpreter that has already imported Prefect's engine
and the flows (``contentforge_cli/preloaded_worker.py``), so a batch starts in milliseconds instead of
seconds of imports.
"""

from __future__ import annotations

from typing import Annotated

import typer

from contentforge_cli import context
from contentforge_cli.context import console

app = typer.Typer()


@app.command("cpu-worker")
def cpu_worker(
    pool: Annotated[str | None, typer.Option(help="Work pool to serve; default the cpu pool.")] = None,
    name: Annotated[str, typer.Option(help="This worker's name in Prefect.")] = "contentforge-cpu",
    limit: Annotated[int | None, typer.Option(min=1, help="Flow runs at once; default no limit.")] = None,
    poll_s: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help="Seconds between asks for runs; default Prefect's worker.query_seconds if set, else 2.",
        ),
    ] = None,
) -> None:
    """Run the cpu pool's flow runs on this machine until stopped (Ctrl-C, SIGTERM)."""
    from contentforge_cli.runtime import connect_or_fail

    settings = context.settings()
    server = connect_or_fail(settings)  # Prefect is imported after it
    from contentforge_cli.preloaded_worker import serve

    work_pool = pool or settings.cpu_pool
    console.print(f"cpu worker for pool {work_pool!r} on Prefect API {server.api_url}", highlight=False)
    serve(work_pool, name, limit, poll_s)
