"""``create_app(settings)``: the FastAPI application (API under ``/api/v1``, gallery, content files).

The app refuses to be built without ``CONTENTFORGE_API_TOKEN`` unless ``insecure_local=True``
(see ``contentforge_api.auth`` for what that mode allows). The database is migrated to head once at
start-up; Prefect is only contacted by the routes that start or read flow runs.
"""

from __future__ import annotations

import gc
import json
import logging
import re
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException
from sqlalchemy import Engine, event
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contentforge.config import Settings, get_settings
from contentforge.services import Services
from contentforge_api import analytics_page, chat_gallery, gallery
from contentforge_api.auth import TokenAuth
from contentforge_api.errors import error_body, install_error_handlers
from contentforge_api.launcher import BatchLauncher
from contentforge_api.routes import (
    chain,
    content,
    dm,
    dm_webhooks,
    jobs,
    models,
    personas,
    review,
    runs,
    templates,
)
from contentforge_api.state import ApiState

API_PREFIX = "/api/v1"
log = logging.getLogger(__name__)


class ApiConfigError(RuntimeError):
    """The API cannot start with this configuration (e.g. no token and not in insecure local mode)."""


class BodySizeLimit:
    """Answer 413 to any request body over ``max_bytes``, declared (Content-Length) or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            error_body("payload_too_large", f"request body is larger than {self.max_bytes} bytes")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's body parsing passes it through as a 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is larger than {max_bytes} bytes")


class SecurityHeaders:
    """nosniff, no referrer, no framing on every response."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers") or []) + list(self.HEADERS)
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


def freeze_startup_heap() -> None:
    """Keep the garbage collector off what start-up built; call once, just before serving.

    The API's imports and app leave about 550,000 long-lived objects, and each full collection walks
    them all: 0.3-1.1 s on the 2-core development machine, during which every request in flight
    waits (one came every ~300 reads at 100k pieces; issue 18). Frozen, they are never scanned
    again, so a collection only walks what requests have left since. Not in ``create_app``: tests
    build many apps in one process, and frozen objects are never freed.
    """
    gc.collect()
    gc.freeze()


_LONG_DIGITS = re.compile(rb"\d{19}")


def _json_loads(data: str | bytes) -> Any:
    """What ``json.loads`` reads, read by orjson where that is the same value.

    orjson reads an integer outside 64 bits as a float, so any run of 19 digits goes to ``json``;
    so does what orjson refuses and PostgreSQL stores (``1e400``, a lone surrogate escape).
    """
    if _LONG_DIGITS.search(data.encode() if isinstance(data, str) else data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def decode_json_with_orjson(engine: Engine) -> None:
    """Have this engine's PostgreSQL connections decode JSON columns with orjson, not ``json``.

    A page of 50 pieces carries about 330 JSON values (each hook's hashtags, each piece's scores and
    reasons), and ``json.loads`` on them was the largest single cost of reading a page at 100,000
    pieces (issue 18); orjson (a dependency of Prefect) parses them several times faster into the same
    Python values (``_json_loads``). The engine's pooled connections are closed, so every connection
    from now on has the loader.
    """
    if engine.dialect.driver != "psycopg":
        return  # SQLite's JSON is decoded by SQLAlchemy itself; the read benchmark is about PostgreSQL
    from psycopg.types.json import set_json_loads

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        set_json_loads(_json_loads, dbapi_connection)  # one function: psycopg makes a class per function

    event.listen(engine, "connect", on_connect)
    engine.dispose()


def worker_app() -> FastAPI:
    """The app of one worker process of ``contentforge api serve --workers N`` (an app factory).

    uvicorn starts each worker as a fresh interpreter that imports this function by name, so
    everything comes from the environment the command checked: the settings (``CONTENTFORGE_*``,
    ``.env``) and ``PREFECT_API_URL``. Each worker freezes its own start-up heap, as a single
    process does, just before it serves.
    """
    app = create_app(get_settings())
    freeze_startup_heap()
    return app


def insecure_local_worker_app() -> FastAPI:
    """``worker_app`` without a token, for ``--insecure-local --workers N``: the command checked the
    loopback bind, and the app still answers loopback clients only. A factory of its own, so that
    nothing in the environment can switch a worker into this mode."""
    app = create_app(get_settings(), insecure_local=True)
    freeze_startup_heap()
    return app


def create_app(
    settings: Settings | None = None,
    *,
    insecure_local: bool = False,
    launcher: BatchLauncher | None = None,
) -> FastAPI:
    """The ContentForge API. Raises ``ApiConfigError`` without a token unless ``insecure_local``."""
    settings = settings or get_settings()
    auth = TokenAuth(settings.api_token, settings.api_read_token, insecure_local=insecure_local)
    if not auth.configured and not insecure_local:
        raise ApiConfigError(
            "CONTENTFORGE_API_TOKEN is not set: set it (e.g. `openssl rand -hex 32`), or run on a loopback "
            "address with --insecure-local for a single-user local API"
        )
    if not auth.configured:
        log.warning("ContentForge API without a token: loopback clients only (--insecure-local)")
    state = ApiState(
        services=Services.from_settings(settings),  # migrates the database to head once, here
        auth=auth,
        launcher=launcher or BatchLauncher(settings.batch_deployment_name),
    )
    decode_json_with_orjson(state.services.sessions.engine)

    app = FastAPI(
        title="ContentForge API",
        version="1",
        description="Templates, personas, batches on Prefect, hooks, safety checks, content and a review "
        "gallery. Authenticate with `Authorization: Bearer <CONTENTFORGE_API_TOKEN>`.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.contentforge = state
    install_error_handlers(app)
    for module in (templates, personas, content, runs, review, jobs, chain, dm, dm_webhooks, models):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(gallery.router)
    app.include_router(chat_gallery.router)
    from contentforge_api.routes import analytics as analytics_routes  # kept apart: a shared import list

    app.include_router(analytics_routes.router, prefix=API_PREFIX)
    app.include_router(analytics_page.router)

    @app.get(f"{API_PREFIX}/health", tags=["health"])
    def health() -> dict[str, Any]:
        """Liveness (no token needed): says nothing about the data."""
        return {"status": "ok"}

    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(SecurityHeaders)
    return app
