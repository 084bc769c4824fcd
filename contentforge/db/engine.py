"""Engines, sessions and schema migration for SQLite and PostgreSQL.

SQLite is used by several generation threads at once, so every connection gets WAL (readers never
block the writer), a 30 s busy timeout (writers queue instead of failing with "database is locked")
and enforced foreign keys. Transactions that write start with ``BEGIN IMMEDIATE``: a deferred
transaction that reads first and writes later can fail at once with SQLITE_BUSY when another writer
got in between, and no busy timeout helps with that.

Migrations ship inside the package and are configured in code, so ``migrate`` works from an
installed wheel and from any working directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "contentforge_read_only"
"""Execution option: a SQLite transaction that only reads may ``BEGIN`` deferred, so it runs beside
the writer under WAL instead of queueing for the write lock."""

_PG_MIGRATION_LOCK = 0x636F6E74656E74  # "content": any constant shared by every migrating process
"""Key of the PostgreSQL advisory lock that serialises concurrent ``migrate`` calls."""


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets the settings that let ~10 threads write at once."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    kwargs: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    }
    if in_memory:
        # Every pooled connection would otherwise see its own empty database.
        kwargs["poolclass"] = StaticPool
    else:
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 module (it skips it for SELECT and DDL); _begin_sqlite_transaction
    # emits it instead, which also makes DDL transactional for migrations.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # safe under WAL; fsync per checkpoint only
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit, so rows can be read once the session closed."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations, independent of the working directory.

    With ``connection``, ``env.py`` migrates on it inside the caller's transaction; without, it reads
    the URL from ``sqlalchemy.url`` or the ContentForge settings.
    """
    cfg = Config()
    # ConfigParser interpolation would treat a '%' in the path as a placeholder.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in one locked transaction for migrations; on SQLite with foreign keys off.

    Why foreign keys off: SQLite cannot alter a constraint, so a migration rebuilds the table (copy,
    ``DROP``, rename); with foreign keys on, dropping a parent such as ``batches`` deletes every
    ``ON DELETE CASCADE`` child (all pieces, hooks and verdicts). SQLite only lets the pragma change
    outside a transaction, so it is set on the raw connection before ``BEGIN``; before committing,
    ``PRAGMA foreign_key_check`` must find nothing, else the migration is rolled back.
    """
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _sqlite_foreign_keys(connection, on=False)
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                    )
                yield connection
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"migration left rows without their parent: {broken[:5]}")
        finally:
            if sqlite:
                _sqlite_foreign_keys(connection, on=True)


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """Set SQLite's foreign-key enforcement on the DBAPI connection itself (outside any transaction)."""
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to the newest schema; a no-op when it is already there.

    Safe to call from several processes at once: the whole upgrade runs in one transaction that
    first takes a lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory transaction lock), so
    the second caller waits, then finds the schema at head and does nothing.
    """
    engine = make_engine(url)
    try:
        with migration_transaction(engine) as connection:
            command.upgrade(alembic_config(connection), "head")
    finally:
        engine.dispose()
