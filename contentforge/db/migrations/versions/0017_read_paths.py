"""Covering indexes for the API's cost totals at 100k pieces (issue 18).

Two single-column indexes of ``cost_entries`` become covering ones whose first column is the old one
(so every lookup the old index served, deletes cascading from a batch or piece included, it still
serves):

- ``cost_entries (batch_id, kind, amount_usd)`` replaces ``cost_entries (batch_id)``: a batch's costs
  per kind (``GET /batches/{id}``, ``Repository.batch_stats``) and a persona's (its ~40 batches' ~6,000
  entries, ``GET /personas/{id}/stats``) are summed from the index without visiting the table.
- ``cost_entries (piece_id, amount_usd)`` replaces ``cost_entries (piece_id)``: each listed piece's
  total cost (the content list, a batch's pieces) likewise.

Creating and dropping an index never rebuilds a table, on SQLite either (see 0006's docstring).

Revision ID: 0017_read_paths
Revises: 0016_piece_variations
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017_read_paths"
down_revision: str | None = "0016_piece_variations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_cost_entries_batch_id_kind_amount_usd"),
        "cost_entries",
        ["batch_id", "kind", "amount_usd"],
        unique=False,
    )
    op.drop_index(op.f("ix_cost_entries_batch_id"), table_name="cost_entries")
    op.create_index(
        op.f("ix_cost_entries_piece_id_amount_usd"), "cost_entries", ["piece_id", "amount_usd"], unique=False
    )
    op.drop_index(op.f("ix_cost_entries_piece_id"), table_name="cost_entries")


def downgrade() -> None:
    op.create_index(op.f("ix_cost_entries_piece_id"), "cost_entries", ["piece_id"], unique=False)
    op.drop_index(op.f("ix_cost_entries_piece_id_amount_usd"), table_name="cost_entries")
    op.create_index(op.f("ix_cost_entries_batch_id"), "cost_entries", ["batch_id"], unique=False)
    op.drop_index(op.f("ix_cost_entries_batch_id_kind_amount_usd"), table_name="cost_entries")
