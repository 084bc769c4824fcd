"""Review decisions, the publications ledger, and the ``needs_review`` piece status.

Revision ID: 0002_review_and_publications
Revises: 0001_initial
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_review_and_publications"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_PIECE_STATUSES = "status IN ('planned', 'generated', 'ready', 'rejected', 'failed')"
NEW_PIECE_STATUSES = "status IN ('planned', 'generated', 'ready', 'needs_review', 'rejected', 'failed')"
OLD_COST_KINDS = "kind IN ('image', 'text', 'moderation')"
NEW_COST_KINDS = "kind IN ('image', 'text', 'moderation', 'publishing')"


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _replace_check(table: str, name: str, condition: str) -> None:
    # batch mode: SQLite cannot alter a constraint in place, so Alembic recreates the table there.
    with op.batch_alter_table(table, recreate="auto") as batch:
        batch.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
        batch.create_check_constraint(op.f(f"ck_{table}_{name}"), condition)


def upgrade() -> None:
    _replace_check("pieces", "status", NEW_PIECE_STATUSES)
    _replace_check("cost_entries", "kind", NEW_COST_KINDS)
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("piece_id", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.CheckConstraint("decision IN ('approve', 'reject')", name=op.f("ck_review_decisions_decision")),
        sa.ForeignKeyConstraint(
            ["piece_id"], ["pieces.id"], name=op.f("fk_review_decisions_piece_id_pieces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_decisions")),
    )
    op.create_index(op.f("ix_review_decisions_piece_id"), "review_decisions", ["piece_id"], unique=False)
    op.create_table(
        "publications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("piece_id", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("publisher", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _ts("scheduled_for", nullable=True),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column("media_url", sa.Text(), nullable=True),
        sa.Column("platform_container_id", sa.String(length=200), nullable=True),
        sa.Column("platform_post_id", sa.String(length=200), nullable=True),
        sa.Column("post_url", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("published_at", nullable=True),
        sa.CheckConstraint(
            "status IN ('scheduled', 'publishing', 'published', 'failed')",
            name=op.f("ck_publications_status"),
        ),
        sa.ForeignKeyConstraint(
            ["piece_id"], ["pieces.id"], name=op.f("fk_publications_piece_id_pieces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publications")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_publications_idempotency_key")),
        sa.UniqueConstraint("piece_id", "platform", name=op.f("uq_publications_piece_id_platform")),
    )
    op.create_index(
        op.f("ix_publications_status_scheduled_for"),
        "publications",
        ["status", "scheduled_for"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_publications_status_scheduled_for"), table_name="publications")
    op.drop_table("publications")
    op.drop_index(op.f("ix_review_decisions_piece_id"), table_name="review_decisions")
    op.drop_table("review_decisions")
    op.execute("UPDATE pieces SET status = 'generated' WHERE status = 'needs_review'")
    op.execute("DELETE FROM cost_entries WHERE kind = 'publishing'")
    _replace_check("cost_entries", "kind", OLD_COST_KINDS)
    _replace_check("pieces", "status", OLD_PIECE_STATUSES)
