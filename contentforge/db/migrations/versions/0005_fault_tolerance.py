"""Columns behind the fault-tolerance promises: batch leases, bound verdicts, leased claims, keyed charges.

* ``batches.lease_owner`` / ``lease_expires_at``: one runner per batch. A runner takes the lease
  before planning and renews it while it runs; a crashed runner's lease expires so a resume works.
  Batch statuses gain ``cancelled`` and ``crashed`` (set by Prefect state hooks, or when a
  ``running`` batch is found with an expired lease).
* ``pieces.moderated_hash``: the hash of exactly what the verdict judged (image bytes and every text
  that may be published). Scheduling and publishing compare it with the piece's current content.
* ``publications.content_hash``: the piece's moderated hash when the row was scheduled.
  ``claim_token`` / ``claim_expires_at``: a claim is a lease renewed during the platform call, and
  only the holder of the current token may write the outcome (a fenced final write).
* ``cost_entries.charge_key``: unique, so one piece's step is charged once however often it is
  retried or resumed, while every generation that ran gets its own key.

Revision ID: 0005_fault_tolerance
Revises: 0004_strategy_costs
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_fault_tolerance"
down_revision: str | None = "0004_strategy_costs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_BATCH_STATUSES = "status IN ('running', 'completed', 'failed')"
NEW_BATCH_STATUSES = "status IN ('running', 'completed', 'failed', 'cancelled', 'crashed')"


def _refuse_cascading_rebuild() -> None:
    """SQLite rebuilds ``batches`` here; with foreign keys on, that would delete every piece.

    ``contentforge.db.engine.migrate`` (and the ``alembic`` command through env.py) run migrations
    with foreign keys off on SQLite; anything else is refused rather than losing data.
    """
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "on SQLite this migration rebuilds the batches table and must run with foreign keys off "
            "(use contentforge.db.engine.migrate or migration_transaction), or every piece would be deleted"
        )


def upgrade() -> None:
    _refuse_cascading_rebuild()
    with op.batch_alter_table("batches", recreate="auto") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint(op.f("ck_batches_status"), type_="check")
        batch.create_check_constraint(op.f("ck_batches_status"), NEW_BATCH_STATUSES)
    with op.batch_alter_table("pieces", recreate="auto") as batch:
        batch.add_column(sa.Column("moderated_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("publications", recreate="auto") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("claim_token", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("cost_entries", recreate="auto") as batch:
        batch.add_column(sa.Column("charge_key", sa.String(length=200), nullable=True))
        batch.create_unique_constraint(op.f("uq_cost_entries_charge_key"), ["charge_key"])


def downgrade() -> None:
    _refuse_cascading_rebuild()
    with op.batch_alter_table("cost_entries", recreate="auto") as batch:
        batch.drop_constraint(op.f("uq_cost_entries_charge_key"), type_="unique")
        batch.drop_column("charge_key")
    with op.batch_alter_table("publications", recreate="auto") as batch:
        batch.drop_column("claim_expires_at")
        batch.drop_column("claim_token")
        batch.drop_column("content_hash")
    with op.batch_alter_table("pieces", recreate="auto") as batch:
        batch.drop_column("moderated_hash")
    op.execute("UPDATE batches SET status = 'failed' WHERE status IN ('cancelled', 'crashed')")
    with op.batch_alter_table("batches", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_batches_status"), type_="check")
        batch.create_check_constraint(op.f("ck_batches_status"), OLD_BATCH_STATUSES)
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
