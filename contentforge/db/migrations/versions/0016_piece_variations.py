"""Variations as pieces: ``pieces.parent_piece_id`` names the piece a variation was derived from.

``contentforge variations PIECE`` (and ``POST /content/{piece_id}/variations``) make real pieces, stored,
moderated and reviewed like any other; this column records which piece each one varies, so the piece's
page lists its variations and a variation links back to its parent. No foreign key, on purpose: SQLite
cannot add or drop one without rebuilding ``pieces`` (which revision 0006 explains we never do), and a
variation outlives a deleted parent batch anyway (its id then names a piece that is gone). Only a
column and its index are added and dropped (SQLite's own ``ALTER TABLE``).

Revision ID: 0016_piece_variations
Revises: 0015_idempotency_keys
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_piece_variations"
down_revision: str | None = "0015_idempotency_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_pieces_parent_piece_id"


def upgrade() -> None:
    op.add_column(
        "pieces",
        sa.Column("parent_piece_id", sa.String(length=64), nullable=True),
    )
    op.create_index(INDEX, "pieces", ["parent_piece_id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="pieces")
    op.drop_column("pieces", "parent_piece_id")
