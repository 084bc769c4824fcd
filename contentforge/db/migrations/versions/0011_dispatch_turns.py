"""The slot dispatcher's demand table: ``dispatch_demands`` (issue 14, priorities across processes).

A new table only, nothing rebuilt. Rows are short-lived (a process rewrites its own several times a
second while it waits for or holds slots), so downgrading just drops the table.

Revision ID: 0011_dispatch_turns
Revises: 0010_read_indexes
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_dispatch_turns"
down_revision: str | None = "0010_read_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatch_demands",
        sa.Column("limit_name", sa.String(length=200), nullable=False),
        sa.Column("participant", sa.String(length=64), nullable=False),
        sa.Column("share", sa.String(length=200), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("served", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("limit_name", "participant", "share", name=op.f("pk_dispatch_demands")),
    )


def downgrade() -> None:
    op.drop_table("dispatch_demands")
