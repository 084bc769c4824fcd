"""``Idempotency-Key`` entries kept in the database (issue 14): one row per token, endpoint and key.

The API used to keep the answers of idempotent requests in one process's memory, so a retry that
reached another API process, or the same one after a restart, ran the (possibly paid) model or
started the flow run again. A row is written ``pending`` before the work starts, inside the
INSERT's uniqueness check, so of two concurrent requests with one key only one does the work; it
becomes ``done`` with the answer once the work returned. ``lease_expires_at`` lets a request take
over a ``pending`` row whose owner died mid-work; ``expires_at`` is when the key may be used anew.

A new table only, nothing rebuilt; downgrading drops it (retries after that run again).

Revision ID: 0015_idempotency_keys
Revises: 0014_reply_claims
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_idempotency_keys"
down_revision: str | None = "0014_reply_claims"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("endpoint", sa.String(length=300), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('pending', 'done')", name=op.f("ck_idempotency_keys_state")),
        sa.PrimaryKeyConstraint("identity", "endpoint", "idempotency_key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_expires_at"), "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_expires_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
