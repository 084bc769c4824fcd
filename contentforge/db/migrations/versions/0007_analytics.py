"""Analytics: posts with metric snapshots per age, account days, learned weights, alerts, pauses (issue 15).

Only new tables: nothing existing is altered, so no SQLite table is rebuilt. ``simulated`` is tied to
``source = 'simulated'`` by a check constraint, so simulated rows are always labelled.

Revision ID: 0007_analytics
Revises: 0006_piece_prompt_sources
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_analytics"
down_revision: str | None = "0006_piece_prompt_sources"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES = "source IN ('api', 'csv', 'simulated')"
SIMULATED_LABEL = "simulated = (source = 'simulated')"
WEIGHT_KINDS = (
    "kind IN ('hour_of_week', 'hashtag', 'hook_style', 'call_to_action', 'template_category', 'tier')"
)


def _aware() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "analytics_posts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account", sa.String(length=120), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("post_id", sa.String(length=200), nullable=False),
        sa.Column("posted_at", _aware(), nullable=False),
        sa.Column("piece_id", sa.String(length=64), nullable=True),
        sa.Column("publication_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("created_at", _aware(), nullable=False),
        sa.CheckConstraint(SOURCES, name=op.f("ck_analytics_posts_source")),
        sa.CheckConstraint(SIMULATED_LABEL, name=op.f("ck_analytics_posts_simulated_label")),
        sa.ForeignKeyConstraint(
            ["piece_id"], ["pieces.id"], name=op.f("fk_analytics_posts_piece_id_pieces"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["publication_id"],
            ["publications.id"],
            name=op.f("fk_analytics_posts_publication_id_publications"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_posts")),
        sa.UniqueConstraint(
            "platform", "account", "post_id", name=op.f("uq_analytics_posts_platform_account_post_id")
        ),
    )
    op.create_index(
        op.f("ix_analytics_posts_account_platform_posted_at"),
        "analytics_posts",
        ["account", "platform", "posted_at"],
    )
    op.create_index(op.f("ix_analytics_posts_piece_id"), "analytics_posts", ["piece_id"])
    op.create_table(
        "metric_snapshots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("post_row_id", sa.Integer(), nullable=False),
        sa.Column("age_hours", sa.Integer(), nullable=False),
        sa.Column("collected_at", _aware(), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=True)
            for name in ("reach", "views", "likes", "comments", "saves", "shares")
        ),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["post_row_id"],
            ["analytics_posts.id"],
            name=op.f("fk_metric_snapshots_post_row_id_analytics_posts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_snapshots")),
        sa.UniqueConstraint(
            "post_row_id", "age_hours", name=op.f("uq_metric_snapshots_post_row_id_age_hours")
        ),
    )
    op.create_table(
        "account_days",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account", sa.String(length=120), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("followers", sa.BigInteger(), nullable=True),
        sa.Column("reach", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.CheckConstraint(SOURCES, name=op.f("ck_account_days_source")),
        sa.CheckConstraint(SIMULATED_LABEL, name=op.f("ck_account_days_simulated_label")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_days")),
        sa.UniqueConstraint("platform", "account", "day", name=op.f("uq_account_days_platform_account_day")),
    )
    op.create_table(
        "learned_weights",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account", sa.String(length=120), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("lift", sa.Float(), nullable=False),
        sa.Column("lower", sa.Float(), nullable=False),
        sa.Column("upper", sa.Float(), nullable=False),
        sa.Column("n_posts", sa.Integer(), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("computed_at", _aware(), nullable=False),
        sa.CheckConstraint(WEIGHT_KINDS, name=op.f("ck_learned_weights_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_learned_weights")),
        sa.UniqueConstraint(
            "account", "platform", "kind", "key", name=op.f("uq_learned_weights_account_platform_kind_key")
        ),
    )
    op.create_table(
        "analytics_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account", sa.String(length=120), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("notified_at", _aware(), nullable=True),
        sa.Column("created_at", _aware(), nullable=False),
        sa.CheckConstraint("kind IN ('reach_drop')", name=op.f("ck_analytics_alerts_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_alerts")),
        sa.UniqueConstraint(
            "account",
            "platform",
            "kind",
            "starts_on",
            name=op.f("uq_analytics_alerts_account_platform_kind_starts_on"),
        ),
    )
    op.create_table(
        "publishing_pauses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("persona_id", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("paused_at", _aware(), nullable=False),
        sa.Column("paused_until", _aware(), nullable=False),
        sa.Column("resumed_at", _aware(), nullable=True),
        sa.Column("resumed_by", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["analytics_alerts.id"],
            name=op.f("fk_publishing_pauses_alert_id_analytics_alerts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publishing_pauses")),
    )
    op.create_index(
        op.f("ix_publishing_pauses_persona_id_platform"), "publishing_pauses", ["persona_id", "platform"]
    )
    op.create_table(
        "piece_feedback",
        sa.Column("piece_id", sa.String(length=64), nullable=False),
        sa.Column("decisions", sa.JSON(), nullable=False),
        sa.Column("created_at", _aware(), nullable=False),
        sa.ForeignKeyConstraint(
            ["piece_id"], ["pieces.id"], name=op.f("fk_piece_feedback_piece_id_pieces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("piece_id", name=op.f("pk_piece_feedback")),
    )


def downgrade() -> None:
    op.drop_table("piece_feedback")
    op.drop_index(op.f("ix_publishing_pauses_persona_id_platform"), table_name="publishing_pauses")
    op.drop_table("publishing_pauses")
    op.drop_table("analytics_alerts")
    op.drop_table("learned_weights")
    op.drop_table("account_days")
    op.drop_table("metric_snapshots")
    op.drop_index(op.f("ix_analytics_posts_piece_id"), table_name="analytics_posts")
    op.drop_index(op.f("ix_analytics_posts_account_platform_posted_at"), table_name="analytics_posts")
    op.drop_table("analytics_posts")
