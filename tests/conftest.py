"""Test session set-up: an isolated data directory and one real local Prefect server.

Prefect reads its settings when first imported, so PREFECT_API_URL and PREFECT_HOME are set in
``pytest_configure`` (before test modules import Prefect) to a free port; the server itself starts
only when a test first asks for the ``prefect_server`` fixture, once per session.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SESSION_DIR = Path(tempfile.mkdtemp(prefix="contentforge-tests-"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_configure(config: pytest.Config) -> None:
    port = _free_port()
    os.environ["CONTENTFORGE_TEST_PREFECT_PORT"] = str(port)
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    os.environ["PREFECT_HOME"] = str(SESSION_DIR / "prefect")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["CONTENTFORGE_DATA_DIR"] = str(SESSION_DIR / "data")
    # The fakes of third-party APIs (webhooks, publishers, LLMs, Replicate) listen on loopback, which
    # the outbound URL policy refuses by default; tests of the policy itself turn this off.
    os.environ["CONTENTFORGE_ALLOW_PRIVATE_URLS"] = "*"
    for name in [n for n in os.environ if n.startswith("CONTENTFORGE_") and n.endswith("_API_KEY")]:
        del os.environ[name]


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """One real ``prefect server`` for the whole session; yields its API URL."""
    from contentforge_cli.server import ensure_server, stop_server

    home = SESSION_DIR / "prefect"
    server = ensure_server(home, port=int(os.environ["CONTENTFORGE_TEST_PREFECT_PORT"]))
    try:
        yield server.api_url
    finally:
        stop_server(home)


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A fresh data directory (and so a fresh SQLite database) for one test; settings cache cleared."""
    from contentforge.config import get_settings

    data_dir = tmp_path / "data"
    monkeypatch.setenv("CONTENTFORGE_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


PG_ADMIN_URL = os.environ.get("CONTENTFORGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A uniquely named PostgreSQL database for this session, dropped at the end.

    Without a reachable server the tests using it skip, except under ``CI=true`` where they fail, so
    CI can never pass by silently testing SQLite only.
    """
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        admin.dispose()
        reason = f"PostgreSQL unreachable at {make_url(PG_ADMIN_URL)!r}: {str(exc).splitlines()[0]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true requires the PostgreSQL tests to run)")
        pytest.skip(reason)
    name = f"contentforge_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A URL whose search_path is a schema of its own, so each test starts from an empty database."""
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(pg_database, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(pg_database).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def migrated_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An engine on an empty, migrated ContentForge database: SQLite, and PostgreSQL (its own schema)
    where the ``postgres`` mark runs; for the stores whose locking differs between the two."""
    from contentforge.db import make_engine, migrate

    url = (
        f"sqlite:///{tmp_path / 'contentforge.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()
