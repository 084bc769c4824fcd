"""``contentforge api serve``: the REST API (contentforge_api) and the review gallery.

``--workers N`` serves from N processes (uvicorn's supervisor: a worker that dies is replaced), each
with its own listening socket on the address (``contentforge_cli.api_listeners``). One Python
process runs one request's Python at a time, so concurrent clients queue behind each other however
many cores the machine has; N processes use N cores. Everything two requests must agree on is in the
database or on the Prefect server (idempotency keys, jobs, event-stream cursors, reviews), so any
worker may answer any request; see docs/api.md for what each worker keeps for itself.
"""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from contentforge_cli import context
from contentforge_cli.context import console, fail

app = typer.Typer(help="The ContentForge REST API and review gallery.", no_args_is_help=True)

MAX_WORKERS = 64
"""More processes than this is a typo, not a plan: each worker holds its own imports and pool."""


def default_workers() -> int:
    """One worker per core this process may use, at most 4: reads are short, and each worker costs
    its own memory (imports, app) and database connections."""
    from contentforge.images.cpu_sizing import available_cores

    return min(available_cores(), 4)


@app.command("serve")
def api_serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind; default CONTENTFORGE_API_HOST.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port; default CONTENTFORGE_API_PORT.")] = None,
    insecure_local: Annotated[
        bool,
        typer.Option("--insecure-local", help="Run without CONTENTFORGE_API_TOKEN (loopback binds only)."),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Server processes; default one per core, at most 4. 1 serves from this process alone.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the API (/api/v1, OpenAPI at /api/v1/openapi.json) and the gallery (/gallery/batches/ID)."""
    import ipaddress

    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        fail(f"--workers must be between 1 and {MAX_WORKERS}, not {workers}")
    processes = default_workers() if workers is None else workers

    import uvicorn

    from contentforge_cli.runtime import connect

    settings = context.settings()
    host = host or settings.api_host
    port = port or settings.api_port
    if insecure_local:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            fail(f"--insecure-local only binds a loopback address (127.0.0.1, ::1), not {host!r}")
    elif not (settings.api_token and settings.api_token.get_secret_value()):
        fail("CONTENTFORGE_API_TOKEN is not set; set it, or use --insecure-local on 127.0.0.1")
    try:
        server = connect(settings)  # batches start on this Prefect server; Prefect is imported after it
        if processes == 1:
            from contentforge_api.app import create_app, freeze_startup_heap

            application = create_app(settings, insecure_local=insecure_local)
        else:
            # The workers build their own apps (this process never imports the API); migrating here
            # first means a database problem is one line before anything starts, and the workers
            # find the schema at head.
            from contentforge.db import migrate

            migrate(settings.resolved_database_url)
    except RuntimeError as exc:  # ApiConfigError, or a PREFECT_API_URL that does not answer
        fail(str(exc))
    console.print(f"Prefect API: {server.api_url}", highlight=False)
    served_by = "one process" if processes == 1 else f"{processes} worker processes"
    console.print(f"ContentForge API: http://{host}:{port}/api/v1/docs ({served_by})", highlight=False)
    if processes == 1:
        freeze_startup_heap()
        uvicorn.run(application, host=host, port=port, log_level="info")
        return
    # Spawned workers inherit this environment (the settings, PREFECT_API_URL set by `connect`);
    # insecure-local mode is a factory of its own, chosen here after the loopback check.
    factory = "insecure_local_worker_app" if insecure_local else "worker_app"
    from contentforge_cli.api_listeners import bind_for_workers

    try:
        listener = bind_for_workers(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    serve_workers(f"contentforge_api.app:{factory}", listener, workers=processes)


def serve_workers(factory: str, listener: socket.socket, *, workers: int, log_level: str = "info") -> None:
    """Serve the app factory ``factory`` (``module:function``) from ``workers`` processes until
    SIGINT or SIGTERM, under uvicorn's supervisor, on ``listener`` (``api_listeners.bind_for_workers``),
    which this closes when the workers have stopped."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    host, port = listener.getsockname()[:2]
    config = uvicorn.Config(factory, factory=True, workers=workers, host=host, port=port, log_level=log_level)
    try:
        Multiprocess(config, sockets=[listener]).run()
    finally:
        listener.close()
