"""ORM tables for analytics: posts and their metric snapshots, account series, learned weights (issue 15).

Every row says where it came from (``source``: ``api``, ``csv`` or ``simulated``) and carries a
``simulated`` flag that a check constraint ties to the source, so simulated data can be filtered out
everywhere and an account holds either real or simulated data, never both
(``contentforge.db.analytics`` refuses to mix them).

``account`` is the platform account the numbers belong to: a persona id for posts ContentForge
published, or any name given to a CSV import or a simulated account. It is a plain string, not a
foreign key, because history imported from before ContentForge has no persona or piece.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from contentforge.db.models import Base, _in, utcnow

ANALYTICS_SOURCES: tuple[str, ...] = ("api", "csv", "simulated")
WEIGHT_KINDS: tuple[str, ...] = (
    "hour_of_week",
    "hashtag",
    "hook_style",
    "call_to_action",
    "template_category",
    "tier",
)
ALERT_KINDS: tuple[str, ...] = ("reach_drop",)
SIMULATED_LABEL = "simulated = (source = 'simulated')"
"""A row is simulated exactly when its source is the simulator: the label cannot be forgotten."""


class AnalyticsPostORM(Base):
    """One post on one platform account, with what it was made of (for learning what works)."""

    __tablename__ = "analytics_posts"
    __table_args__ = (
        UniqueConstraint("platform", "account", "post_id"),
        CheckConstraint(_in("source", ANALYTICS_SOURCES), name="source"),
        CheckConstraint(SIMULATED_LABEL, name="simulated_label"),
        Index(None, "account", "platform", "posted_at"),
        Index(None, "piece_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(120))
    platform: Mapped[str] = mapped_column(String(32))
    post_id: Mapped[str] = mapped_column(String(200))
    posted_at: Mapped[datetime]
    piece_id: Mapped[str | None] = mapped_column(ForeignKey("pieces.id", ondelete="SET NULL"))
    publication_id: Mapped[int | None] = mapped_column(ForeignKey("publications.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(16))
    simulated: Mapped[bool] = mapped_column(Boolean)
    features: Mapped[dict[str, Any]]
    """Hashtags, hook style, call to action, template category, tier, caption length, image features."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MetricSnapshotORM(Base):
    """A post's metrics at one nominal age (1 h, 6 h, 24 h…); re-collecting an age replaces it."""

    __tablename__ = "metric_snapshots"
    __table_args__ = (UniqueConstraint("post_row_id", "age_hours"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    post_row_id: Mapped[int] = mapped_column(ForeignKey("analytics_posts.id", ondelete="CASCADE"))
    age_hours: Mapped[int] = mapped_column(Integer)
    collected_at: Mapped[datetime]
    reach: Mapped[int | None] = mapped_column(BigInteger)
    views: Mapped[int | None] = mapped_column(BigInteger)
    likes: Mapped[int | None] = mapped_column(BigInteger)
    comments: Mapped[int | None] = mapped_column(BigInteger)
    saves: Mapped[int | None] = mapped_column(BigInteger)
    shares: Mapped[int | None] = mapped_column(BigInteger)
    extra: Mapped[dict[str, Any] | None]
    """Platform metrics without a column of their own (X's ``url_link_clicks``, ``quote_count``…)."""


class AccountDayORM(Base):
    """An account's daily series (followers, reach) where the platform offers one."""

    __tablename__ = "account_days"
    __table_args__ = (
        UniqueConstraint("platform", "account", "day"),
        CheckConstraint(_in("source", ANALYTICS_SOURCES), name="source"),
        CheckConstraint(SIMULATED_LABEL, name="simulated_label"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(120))
    platform: Mapped[str] = mapped_column(String(32))
    day: Mapped[date] = mapped_column(Date)
    followers: Mapped[int | None] = mapped_column(BigInteger)
    reach: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))
    simulated: Mapped[bool] = mapped_column(Boolean)


class LearnedWeightORM(Base):
    """What the last ``learn`` run concluded for one account: a lift with its interval, per key."""

    __tablename__ = "learned_weights"
    __table_args__ = (
        UniqueConstraint("account", "platform", "kind", "key"),
        CheckConstraint(_in("kind", WEIGHT_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(120))
    platform: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200))
    lift: Mapped[float] = mapped_column(Float)
    """Expected normalized engagement relative to the account's baseline (1.0 = typical)."""
    lower: Mapped[float] = mapped_column(Float)
    upper: Mapped[float] = mapped_column(Float)
    n_posts: Mapped[int] = mapped_column(Integer)
    simulated: Mapped[bool] = mapped_column(Boolean)
    computed_at: Mapped[datetime]


class AnalyticsAlertORM(Base):
    """A detected reach drop (or other anomaly); one per account, platform, kind and start day."""

    __tablename__ = "analytics_alerts"
    __table_args__ = (
        UniqueConstraint("account", "platform", "kind", "starts_on"),
        CheckConstraint(_in("kind", ALERT_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(120))
    platform: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    starts_on: Mapped[date] = mapped_column(Date)
    detail: Mapped[dict[str, Any]]
    simulated: Mapped[bool] = mapped_column(Boolean)
    notified_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PublishingPauseORM(Base):
    """Publishing held for a persona on a platform until ``paused_until`` or a resume command."""

    __tablename__ = "publishing_pauses"
    __table_args__ = (Index(None, "persona_id", "platform"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    persona_id: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("analytics_alerts.id", ondelete="SET NULL"))
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)
    paused_until: Mapped[datetime]
    resumed_at: Mapped[datetime | None]
    resumed_by: Mapped[str | None] = mapped_column(String(120))


class PieceFeedbackORM(Base):
    """Which learned weights influenced a piece (template draw, hook order, slot), and how."""

    __tablename__ = "piece_feedback"

    piece_id: Mapped[str] = mapped_column(ForeignKey("pieces.id", ondelete="CASCADE"), primary_key=True)
    decisions: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
