"""Piece statuses ``cancelled`` and ``crashed`` (issue 14, item 2).

When a batch's run is cancelled or dies, the pieces it had not made yet leave ``planned`` for the
batch's own end status, so listings, counts and the gallery can tell a piece that will not come (until
the batch id is resumed) from one still to come. A resume turns them back to ``planned``.

On SQLite the ``pieces`` table is rebuilt to change its CHECK constraint; its children (hooks,
verdicts, costs, review decisions, publications, ratings) reference it by name, and the rebuild runs
with foreign keys off (``contentforge.db.engine.migration_transaction``) so none of their rows is
deleted by ``ON DELETE CASCADE``. The downgrade turns both statuses back into ``planned``.

Revision ID: 0019_piece_cancelled
Revises: 0018_piece_ratings
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019_piece_cancelled"
down_revision: str | None = "0018_piece_ratings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_PIECE_STATUSES = "status IN ('planned', 'generated', 'ready', 'needs_review', 'rejected', 'failed')"
NEW_PIECE_STATUSES = (
    "status IN ('planned', 'generated', 'ready', 'needs_review', 'rejected', 'failed', "
    "'cancelled', 'crashed')"
)


def _refuse_cascading_rebuild() -> None:
    """SQLite rebuilds ``pieces`` here; with foreign keys on, that would delete every hook and verdict."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "on SQLite this migration rebuilds the pieces table and must run with foreign keys off "
            "(use contentforge.db.engine.migrate or migration_transaction), or every hook, verdict "
            "and rating would be deleted"
        )


def _replace_status_check(condition: str) -> None:
    # batch mode: SQLite cannot alter a constraint in place, so Alembic recreates the table there
    # (indexes included); PostgreSQL drops and adds the constraint.
    with op.batch_alter_table("pieces", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_pieces_status"), type_="check")
        batch.create_check_constraint(op.f("ck_pieces_status"), condition)


def upgrade() -> None:
    _refuse_cascading_rebuild()
    _replace_status_check(NEW_PIECE_STATUSES)


def downgrade() -> None:
    _refuse_cascading_rebuild()
    op.execute("UPDATE pieces SET status = 'planned' WHERE status IN ('cancelled', 'crashed')")
    _replace_status_check(OLD_PIECE_STATUSES)
