"""The one session policy of every store on the ContentForge database, and the helpers they share.

Short transactions: each call opens a session, does its work in one transaction and closes it, so a
store holds no session (and, on SQLite, not the write lock) between calls and one store can be
shared by the ~10 generation threads of a batch. Writes ``BEGIN IMMEDIATE`` on SQLite
(``contentforge.db.engine``); reads are marked ``READ_ONLY`` and ``BEGIN`` deferred, so they run
beside the writer under WAL instead of queueing for the write lock. Sessions keep loaded values after
commit, so rows can be read once the session closed.

The repository (``contentforge.db.repository``) and the stores beside it (review queue, publication
ledger, strategy store, the API's read queries) all take a ``SessionPolicy``, rather than each
building its own session factory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from contentforge.db.engine import READ_ONLY, make_session_factory
from contentforge.db.models import BatchORM, PieceORM
from contentforge.errors import InvalidInput


class RecordNotFound(LookupError):
    """A piece or batch id that the database does not know: a caller bug, not bad user input."""


class SessionPolicy:
    """Short write and read transactions on one engine (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = make_session_factory(engine)
        self._read_sessions = make_session_factory(engine.execution_options(**{READ_ONLY: True}))

    @classmethod
    def of(cls, source: Engine | SessionPolicy) -> SessionPolicy:
        """``source`` itself when it is a policy already, else the policy on the engine ``source``."""
        return source if isinstance(source, SessionPolicy) else cls(source)

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one transaction that may write; committed when the block ends without error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session in one transaction that only reads (deferred ``BEGIN`` on SQLite)."""
        with self._read_sessions() as session, session.begin():
            yield session


class Store:
    """Base of the repositories per aggregate: they share one ``SessionPolicy``."""

    def __init__(self, sessions: Engine | SessionPolicy) -> None:
        self._db = SessionPolicy.of(sessions)

    @property
    def sessions(self) -> SessionPolicy:
        """The session policy, for stores that query the same database (review, publishing, strategy)."""
        return self._db

    @property
    def engine(self) -> Engine:
        return self._db.engine


def insert_for(session: Session, entity: type[Any]) -> Any:
    """An INSERT that supports ON CONFLICT: both backends have it, with the same SQLAlchemy API."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(entity)
    if dialect == "sqlite":
        return sqlite.insert(entity)
    raise NotImplementedError(f"ContentForge supports SQLite and PostgreSQL, not {dialect}")


def load_batch(session: Session, batch_id: str, *, for_update: bool = False) -> BatchORM:
    batch = session.get(BatchORM, batch_id, with_for_update=for_update)
    if batch is None:
        raise RecordNotFound(f"no batch with id {batch_id!r}")
    return batch


def load_piece(session: Session, piece_id: str, *, for_update: bool = False) -> PieceORM:
    # FOR UPDATE serialises concurrent writers of one piece on PostgreSQL; SQLite's BEGIN IMMEDIATE
    # already does, and its compiler omits the clause.
    piece = session.get(PieceORM, piece_id, with_for_update=for_update)
    if piece is None:
        raise RecordNotFound(f"no piece with id {piece_id!r}")
    return piece


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (its result is a cursor result)."""
    return cast(CursorResult[Any], result).rowcount


def require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be timezone-aware (e.g. datetime.now(UTC)), got {value.isoformat()}")
