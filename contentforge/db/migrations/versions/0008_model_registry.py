"""Model registry: base models and LoRAs installed from hubs or local files, and their feedback (issue 16).

Only new tables, so no SQLite table is rebuilt.

Revision ID: 0008_model_registry
Revises: 0007_analytics
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_model_registry"
down_revision: str | None = "0007_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "installed_models",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_ref", sa.String(length=500), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("family", sa.String(length=8), nullable=False),
        sa.Column("family_reason", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("trigger_words", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("recommended_weight", sa.Float(), nullable=True),
        sa.Column("tags", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("licence", sa.String(length=300), nullable=False),
        sa.Column("rating", sa.Float(), nullable=True),
        sa.Column("downloads", sa.BigInteger(), nullable=False),
        _ts("installed_at"),
        _ts("last_used_at", nullable=True),
        sa.CheckConstraint("kind IN ('checkpoint', 'lora')", name=op.f("ck_installed_models_kind")),
        sa.CheckConstraint(
            "source IN ('huggingface', 'civitai', 'local')", name=op.f("ck_installed_models_source")
        ),
        sa.CheckConstraint("family IN ('sd15', 'sdxl', 'flux')", name=op.f("ck_installed_models_family")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_installed_models")),
    )
    op.create_index(
        op.f("ix_installed_models_kind_family"), "installed_models", ["kind", "family"], unique=False
    )
    op.create_table(
        "model_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("approvals", sa.Integer(), nullable=False),
        sa.Column("rejections", sa.Integer(), nullable=False),
        sa.Column("rating_total", sa.Float(), nullable=False),
        sa.Column("rating_count", sa.Integer(), nullable=False),
        _ts("updated_at"),
        sa.CheckConstraint("subject IN ('lora', 'param')", name=op.f("ck_model_feedback_subject")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_feedback")),
        sa.UniqueConstraint("subject", "key", name=op.f("uq_model_feedback_subject_key")),
    )


def downgrade() -> None:
    op.drop_table("model_feedback")
    op.drop_index(op.f("ix_installed_models_kind_family"), table_name="installed_models")
    op.drop_table("installed_models")
