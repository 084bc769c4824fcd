"""Point this process at a Prefect server before Prefect is imported.

Prefect reads its settings when first imported, so the CLI, the tests and the benchmark call
``connect`` first and import flows afterwards.
"""

from __future__ import annotations

import os

from contentforge.config import Settings
from contentforge_cli.server import LocalServer, api_url_for, ensure_server, is_healthy


def connect(settings: Settings) -> LocalServer:
    """Use PREFECT_API_URL if it is set and healthy, else start or reuse the local server.

    The terminal shows Prefect's warnings only (the progress bar is the terminal's view), while
    every INFO log still reaches the server and the UI.
    """
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    # transformers warns about optional torchvision image processors nobody here uses; errors still show.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # Flow-run heartbeats, so the crash automation marks this process's runs Crashed if it dies.
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(settings.flow_heartbeat_s))
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        if not is_healthy(configured):
            raise RuntimeError(
                f"PREFECT_API_URL={configured} does not answer; unset it to use a local server"
            )
        return LocalServer(configured, configured.removesuffix("/api"), None, started=False)
    server = ensure_server(
        settings.prefect_home, port=settings.prefect_port, database_url=settings.prefect_database_url
    )
    os.environ["PREFECT_API_URL"] = api_url_for("127.0.0.1", settings.prefect_port)
    os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home.resolve()))
    return server


def connect_or_fail(settings: Settings) -> LocalServer:
    """``connect``, where a PREFECT_API_URL that does not answer is one line and exit code 2."""
    from contentforge_cli.context import fail

    try:
        return connect(settings)
    except RuntimeError as exc:
        fail(str(exc))
