"""Indexes that keep the API's reads and a running batch's polls flat at 100k pieces (issue 18).

Two single-column indexes become two-column ones whose first column is the old one (so every query
the old index served, it still serves):

- ``pieces (batch_id, status)`` replaces ``pieces (batch_id)``: counting a batch's pieces per status
  (the batch flow's follow-up loop, ``PieceStatusWatcher``, polls that four times a second; the API's
  batch status counts) reads the index alone instead of every row of the batch.
- ``batches (persona_id, started_at)`` replaces ``batches (persona_id)``: a persona's batches newest
  first (the content list's order, the latest batch in the persona's stats) come out of the index in
  order instead of being sorted.

Creating and dropping an index never rebuilds a table, on SQLite either (see 0006's docstring).

Revision ID: 0010_read_indexes
Revises: 0009_conversations
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010_read_indexes"
down_revision: str | None = "0009_conversations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_pieces_batch_id_status"), "pieces", ["batch_id", "status"], unique=False)
    op.drop_index(op.f("ix_pieces_batch_id"), table_name="pieces")
    op.create_index(
        op.f("ix_batches_persona_id_started_at"), "batches", ["persona_id", "started_at"], unique=False
    )
    op.drop_index(op.f("ix_batches_persona_id"), table_name="batches")


def downgrade() -> None:
    op.create_index(op.f("ix_batches_persona_id"), "batches", ["persona_id"], unique=False)
    op.drop_index(op.f("ix_batches_persona_id_started_at"), table_name="batches")
    op.create_index(op.f("ix_pieces_batch_id"), "pieces", ["batch_id"], unique=False)
    op.drop_index(op.f("ix_pieces_batch_id_status"), table_name="pieces")
