"""``prefect server start`` for a SQLite database, with its write transactions queued, not failed.

Why: Prefect's server begins its SQLite transactions DEFERRED, and several of the requests a batch
makes read before they write in one transaction (a slot request reads the limit, then raises its count;
a new flow run reads its flow's labels, then inserts). In WAL mode SQLite cannot turn such a
transaction into a writing one once another connection has committed since its read: it fails at once
with "database is locked" (``SQLITE_BUSY``, without waiting for the busy timeout). The server answers
503, and Prefect's client retries after 2 s, then 4 s, ... Measured with three simultaneous batches of
50 pieces (docs/benchmarks.md): about a third of the slot requests failed so, slot holders idled while
they backed off, and in one run a batch generated its first image 27 s after the start, the others
after 5-8 s.

``BEGIN IMMEDIATE`` takes the write lock when the transaction begins, so a request that will write
waits its turn (SQLite's busy timeout, which Prefect sets to 60 s) instead of failing; it is what
Django's ``transaction_mode`` and Rails do for SQLite. Prefect already begins the transactions it marks
``with_for_update`` this way; here every transaction it begins explicitly does. Statements outside an
explicit transaction (most reads) are untouched, and a PostgreSQL-backed server is started as Prefect
ships it (``contentforge_cli/server.py``).

    python -m contentforge_cli.sqlite_server --host 127.0.0.1 --port 4200   # as `prefect server start`
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any


def begin_immediately() -> None:
    """Make the SQLite configuration of Prefect's server begin every transaction IMMEDIATE."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    deferred_or_immediate: Callable[..., AbstractAsyncContextManager[Any]] = (
        AioSqliteConfiguration.begin_transaction
    )
    if getattr(deferred_or_immediate, "always_immediate", False):
        return

    def begin_transaction(
        self: AioSqliteConfiguration, session: Any, with_for_update: bool = False
    ) -> AbstractAsyncContextManager[Any]:
        return deferred_or_immediate(self, session, with_for_update=True)

    begin_transaction.always_immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign,assignment]


def main(arguments: list[str]) -> None:
    """Run ``prefect server start ARGUMENTS`` in this process (Prefect runs one worker in-process)."""
    begin_immediately()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *arguments]
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
