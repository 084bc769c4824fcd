"""The embedded SQLite Prefect server: its transactions take the write lock when they begin, and it is
started with batched task-run and event writes (``contentforge_cli/sqlite_server.py``, ``server.py``)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.server.database.configurations import AioSqliteConfiguration

from contentforge_cli.server import SQLITE_SERVER_SETTINGS, server_command, server_environment
from contentforge_cli.sqlite_server import begin_immediately


def _writer_refused_while_a_transaction_reads(db_file: Path) -> bool:
    """Open a transaction through Prefect's SQLite configuration, read in it, and ask a second
    connection (no busy wait) for the write lock meanwhile: True if it was refused."""
    with sqlite3.connect(db_file) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS slots (n INTEGER)")
    config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{db_file}")

    async def read_inside_a_transaction() -> bool:
        engine = await config.engine()
        session = await config.session(engine)
        async with session, config.begin_transaction(session):
            await session.execute(sa.text("SELECT count(*) FROM slots"))
            other = sqlite3.connect(db_file, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                return False
            except sqlite3.OperationalError as error:
                assert "locked" in str(error)
                return True
            finally:
                other.close()

    return asyncio.run(read_inside_a_transaction())


def test_transactions_take_the_write_lock_when_they_begin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AioSqliteConfiguration, "begin_transaction", AioSqliteConfiguration.begin_transaction)
    # As Prefect ships it: a transaction that has only read holds no write lock, so another writer
    # commits in between, and the first one's own write later fails with "database is locked".
    assert not _writer_refused_while_a_transaction_reads(tmp_path / "deferred.db")
    begin_immediately()
    begin_immediately()  # idempotent: wrapping twice changes nothing
    assert _writer_refused_while_a_transaction_reads(tmp_path / "immediate.db")


def test_sqlite_server_runs_the_launcher_with_batched_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server_command(None) == [sys.executable, "-m", "contentforge_cli.sqlite_server"]
    assert "contentforge_cli.sqlite_server" not in server_command("postgresql+asyncpg://u@h/db")
    for name in SQLITE_SERVER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL", "7")
    recorder_batch = "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"
    env = server_environment(tmp_path)
    assert env[recorder_batch] == SQLITE_SERVER_SETTINGS[recorder_batch]
    assert env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL"] == "7"  # the user's setting wins
    assert recorder_batch not in server_environment(tmp_path, "postgresql+asyncpg://u@h/db")
