"""``Repository``: the one facade over the repositories per aggregate, sharing one session policy.

Each aggregate has its own module and class, usable alone on a ``SessionPolicy``:

* ``db.personas.PersonaRepository``: personas, saved whole and found by id or name;
* ``db.batches.BatchRepository``: batches, their leases (one runner per batch), listings, statistics;
* ``db.pieces.PieceRepository``: pieces, their images, hooks, prompt sources and bound verdicts;
* ``db.costs.CostRepository``: the cost ledger, every charge recorded once by its key.

``Repository`` combines them, so callers keep one object and today's method names. Every method runs
in its own short transaction (``db.sessions``), so one ``Repository`` can be shared by the ~10
generation threads of a batch. Writes are idempotent where a retried Prefect task would repeat them:
planning pieces, recording a generated image and its cost, replacing hooks. Nothing that looks like a
credential is stored: JSON payloads and error texts pass through ``contentforge.redaction`` first.

Front ends do not build one themselves: ``contentforge.services.Services.from_settings`` opens the
database (migrated once) and builds the repository with the stores beside it.
"""

from __future__ import annotations

from sqlalchemy import Engine

from contentforge.db.batches import BatchRepository, effective_status
from contentforge.db.costs import CostRepository
from contentforge.db.engine import make_engine, migrate
from contentforge.db.personas import PersonaRepository
from contentforge.db.pieces import MAX_ERROR_CHARS, PieceRepository, content_hash_of
from contentforge.db.rows import (
    BatchCost,
    BatchStats,
    BatchSummary,
    CostReport,
    PieceRow,
    PlannedPiece,
    StepCost,
)
from contentforge.db.sessions import RecordNotFound, SessionPolicy

__all__ = [
    "MAX_ERROR_CHARS",
    "BatchCost",
    "BatchStats",
    "BatchSummary",
    "CostReport",
    "PieceRow",
    "PlannedPiece",
    "RecordNotFound",
    "Repository",
    "StepCost",
    "content_hash_of",
    "effective_status",
]


class Repository(PersonaRepository, BatchRepository, PieceRepository, CostRepository):
    """Short-transaction access to personas, batches, pieces, hooks, verdicts and costs."""

    def __init__(self, engine: Engine | SessionPolicy) -> None:
        super().__init__(engine)

    @classmethod
    def open(cls, url: str) -> Repository:
        """The repository on the database at ``url``, migrated to head first (a no-op when it is)."""
        migrate(url)
        return cls(make_engine(url))
