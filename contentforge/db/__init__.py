"""Persistence: SQLAlchemy models, packaged Alembic migrations and the repository used by tasks."""

from contentforge.db.engine import make_engine, make_session_factory, migrate
from contentforge.db.repository import CostReport, PieceRow, PlannedPiece, RecordNotFound, Repository

__all__ = [
    "CostReport",
    "PieceRow",
    "PlannedPiece",
    "RecordNotFound",
    "Repository",
    "make_engine",
    "make_session_factory",
    "migrate",
]
