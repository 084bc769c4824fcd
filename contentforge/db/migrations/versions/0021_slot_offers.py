"""Slot offers (issue 14): a slot given back for a more urgent process is handed over, not released.

A high-priority generation in another process waited for the holder to release its slot on the Prefect
server and for itself to acquire it again: two writes on a busy server, and a window in which a third
process could take the slot first. A row here offers the held lease to the process it is owed to, which
marks it taken; ``contentforge.db.slot_offers`` says how it is taken or withdrawn. The id is the
giver's UUID, not a database sequence (SQLite reuses a deleted row's integer key).

Revision ID: 0021_slot_offers
Revises: 0020_generation_claims
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_slot_offers"
down_revision: str | None = "0020_generation_claims"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slot_offers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("limit_name", sa.String(length=200), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("giver", sa.String(length=64), nullable=False),
        sa.Column("lease_id", sa.String(length=64), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slot_offers")),
    )
    op.create_index(
        op.f("ix_slot_offers_limit_name_recipient"), "slot_offers", ["limit_name", "recipient"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_slot_offers_limit_name_recipient"), table_name="slot_offers")
    op.drop_table("slot_offers")
