"""Persistence: SQLAlchemy models, packaged Alembic migrations and the repository used by tasks."""

# The area modules register their tables on the shared metadata (models.Base) when the package loads.
from contentforge.db import (  # noqa: F401
    models_analytics,
    models_chat,
    models_claims,
    models_dispatch,
    models_idempotency,
    models_ratings,
    models_registry,
)
from contentforge.db.engine import make_engine, make_session_factory, migrate
from contentforge.db.repository import (
    BatchStats,
    BatchSummary,
    CostReport,
    PieceRow,
    PlannedPiece,
    RecordNotFound,
    Repository,
)
from contentforge.db.sessions import SessionPolicy

__all__ = [
    "BatchStats",
    "BatchSummary",
    "CostReport",
    "PieceRow",
    "PlannedPiece",
    "RecordNotFound",
    "Repository",
    "SessionPolicy",
    "make_engine",
    "make_session_factory",
    "migrate",
]
