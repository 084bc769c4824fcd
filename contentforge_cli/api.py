"""``contentforge api serve``: the REST API (contentforge_api) and the review gallery."""

from __future__ import annotations

from typing import Annotated

import typer

from contentforge_cli import context
from contentforge_cli.context import console, fail

app = typer.Typer(help="The ContentForge REST API and review gallery.", no_args_is_help=True)


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
) -> None:
    """Serve the API (/api/v1, OpenAPI at /api/v1/openapi.json) and the gallery (/gallery/batches/ID)."""
    import ipaddress

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
        from contentforge_api.app import create_app, freeze_startup_heap

        application = create_app(settings, insecure_local=insecure_local)
    except RuntimeError as exc:  # ApiConfigError, or a PREFECT_API_URL that does not answer
        fail(str(exc))
    console.print(f"Prefect API: {server.api_url}", highlight=False)
    console.print(f"ContentForge API: http://{host}:{port}/api/v1/docs", highlight=False)
    freeze_startup_heap()
    uvicorn.run(application, host=host, port=port, log_level="info")
