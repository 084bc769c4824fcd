"""SQLAlchemy table definitions: the single source of truth that the migrations must match.

The types are chosen to behave the same on SQLite (local runs, tests) and PostgreSQL (deployments):
string ids, ``sqlalchemy.JSON`` and timezone-aware timestamps. ``tests/test_db.py`` compares this
metadata with the migrated schema on both, so a model change without a migration fails the tests.

No table has a column for credentials: API keys live only in settings, never in the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so later migrations can drop or alter them on any backend."""

BATCH_STATUSES: tuple[str, ...] = ("running", "completed", "failed", "cancelled", "crashed")
"""``crashed``: its runner died (Prefect marked the run Crashed, or its lease expired while ``running``)."""
PIECE_STATUSES: tuple[str, ...] = (
    "planned",
    "generated",
    "ready",
    "needs_review",
    "rejected",
    "failed",
    "cancelled",
    "crashed",
)
"""``ready`` means publishable by policy or by a reviewer; ``needs_review`` waits for a human.
``cancelled`` / ``crashed``: still to be made when its batch's run was cancelled or died (migration
0019); a resume of the batch turns them back to ``planned`` (``BatchRepository.acquire_batch_lease``)."""
COST_KINDS: tuple[str, ...] = ("image", "text", "moderation", "publishing")
STRATEGY_STEPS: tuple[str, ...] = (
    "research_brand",
    "propose_personas",
    "plan_topics",
    "write_blog_post",
    "derive_social_posts",
)
"""Strategy steps that pay for model calls outside any batch; named after the flows that run them."""
API_REQUEST_STEPS: tuple[str, ...] = ("api_hooks",)
"""API requests that pay for model calls outside any batch (``/content/hooks``, variations, CTAs)."""
REVIEW_DECISIONS: tuple[str, ...] = ("approve", "reject")
PUBLICATION_STATUSES: tuple[str, ...] = ("scheduled", "publishing", "published", "failed")


def utcnow() -> datetime:
    """The current time, timezone-aware, so stored times never depend on the host's zone."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always hands back aware UTC datetimes.

    SQLite has no time zone type and returns naive values; PostgreSQL returns the session's zone.
    Normalising both to UTC keeps comparisons and JSON output identical across backends, and
    refusing naive input stops a local time from being stored as if it were UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; pass a timezone-aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


Json = JSON(none_as_null=True)
"""JSON where Python ``None`` is SQL NULL, so ``IS NULL`` filters work on optional payloads."""


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: Json, list[Any]: Json}  # noqa: RUF012


class BrandORM(Base):
    __tablename__ = "brands"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    website: Mapped[str | None] = mapped_column(String(500))
    dna: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PersonaORM(Base):
    __tablename__ = "personas"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    brand_id: Mapped[str | None] = mapped_column(ForeignKey("brands.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(120), unique=True)
    niche: Mapped[str] = mapped_column(String(60))
    data: Mapped[dict[str, Any]]
    """The whole ``Persona.model_dump(mode="json")``: new persona fields need no migration."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BatchORM(Base):
    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint(_in("status", BATCH_STATUSES), name="status"),
        Index(None, "persona_id", "started_at"),  # a persona's batches newest first (migration 0010)
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    persona_id: Mapped[str] = mapped_column(ForeignKey("personas.id"))
    platform: Mapped[str] = mapped_column(String(32))
    num_pieces: Mapped[int] = mapped_column(Integer)
    tier_mix: Mapped[dict[str, Any]]
    seed: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="running")
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    summary: Mapped[dict[str, Any] | None]
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    """Who runs the batch now (host, pid, flow run); one runner per batch (``db.leases``)."""
    lease_expires_at: Mapped[datetime | None]
    """Renewed while the runner lives; once past, a resume may take the batch over."""


class PieceORM(Base):
    """One planned image of a batch and everything that happened to it."""

    __tablename__ = "pieces"
    __table_args__ = (
        UniqueConstraint("batch_id", "index"),
        CheckConstraint(_in("status", PIECE_STATUSES), name="status"),
        Index(None, "persona_id", "status"),
        Index(None, "batch_id", "status"),  # per-status counts from the index alone (migration 0010)
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    persona_id: Mapped[str] = mapped_column(ForeignKey("personas.id"))
    index: Mapped[int] = mapped_column(Integer)
    template_id: Mapped[str] = mapped_column(String(16))
    template_tier: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="planned")
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int] = mapped_column(BigInteger)
    model: Mapped[str | None] = mapped_column(String(300))
    backend: Mapped[str | None] = mapped_column(String(64))
    loras: Mapped[list[Any] | None]
    steps: Mapped[int | None] = mapped_column(Integer)
    guidance_scale: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    scheduler: Mapped[str | None] = mapped_column(String(120))
    generation_record: Mapped[dict[str, Any] | None]
    generation_fingerprint: Mapped[str | None] = mapped_column(String(64))
    storage_key: Mapped[str | None] = mapped_column(String(500))
    url: Mapped[str | None] = mapped_column(Text)
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    generation_seconds: Mapped[float | None] = mapped_column(Float)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str | None] = mapped_column(String(16))
    tier: Mapped[str | None] = mapped_column(String(16))
    moderation_scores: Mapped[dict[str, Any] | None]
    moderation_reasons: Mapped[list[Any] | None]
    moderated_hash: Mapped[str | None] = mapped_column(String(64))
    """Hash of exactly what the verdict judged (``domain.binding``); NULL when unmoderated."""
    error: Mapped[str | None] = mapped_column(Text)
    prompt_source: Mapped[str | None] = mapped_column(String(8))
    """``llm`` or ``rules``: who wrote the image prompt; NULL when planned without a model (rules)."""
    prompt_fallback: Mapped[str | None] = mapped_column(Text)
    """Why a model-written prompt fell back to the rules (short, redacted); NULL otherwise."""
    prompt_quality_gate: Mapped[dict[str, Any] | None]
    """The quality gate's verdict on the image prompt (revision 0013)."""
    parent_piece_id: Mapped[str | None] = mapped_column(String(64), index=True)
    """The piece this one is a variation of (revision 0016); no foreign key, see the migration."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    hooks: Mapped[list[HookORM]] = relationship(
        order_by="[HookORM.platform, HookORM.position]", cascade="all, delete-orphan", passive_deletes=True
    )


class HookORM(Base):
    __tablename__ = "hooks"
    __table_args__ = (UniqueConstraint("piece_id", "platform", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    piece_id: Mapped[str] = mapped_column(ForeignKey("pieces.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    style: Mapped[str] = mapped_column(String(32))
    platform: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    call_to_action: Mapped[str] = mapped_column(Text)
    hashtags: Mapped[list[Any]]
    quality_gate: Mapped[dict[str, Any] | None]
    """The quality gate's verdict on this hook (revision 0013); ``needs_review`` is never published."""


class ModerationVerdictORM(Base):
    """Every moderation pass is kept, so a re-moderated piece still shows why it was rejected before."""

    __tablename__ = "moderation_verdicts"
    __table_args__ = (Index(None, "piece_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    piece_id: Mapped[str] = mapped_column(ForeignKey("pieces.id", ondelete="CASCADE"))
    verdict: Mapped[str] = mapped_column(String(16))
    scores: Mapped[dict[str, Any]]
    reasons: Mapped[list[Any]]
    backends: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CostEntryORM(Base):
    """One charge in the cost ledger: for batch work, or for a strategy step that has no batch.

    Batch charges carry ``batch_id`` (and ``piece_id`` when one piece caused them). Strategy charges
    (brand research, personas, topics, blog and social posts) carry ``step`` instead, and say what
    they were for in ``brand_id``, ``persona_id`` and ``subject_id`` (the topic plan's month, the blog
    post's id). Those three are plain strings, not foreign keys, on purpose: the ledger records money
    spent, and a model call is paid even when its step fails before the brand or post is saved.
    """

    __tablename__ = "cost_entries"
    __table_args__ = (
        CheckConstraint(_in("kind", COST_KINDS), name="kind"),
        CheckConstraint("batch_id IS NOT NULL OR step IS NOT NULL", name="attributed"),
        CheckConstraint(f"step IS NULL OR {_in('step', STRATEGY_STEPS + API_REQUEST_STEPS)}", name="step"),
        # Covering (migration 0017): a batch's or piece's cost totals are summed from the index alone.
        Index(None, "batch_id", "kind", "amount_usd"),
        Index(None, "piece_id", "amount_usd"),
        Index(None, "persona_id"),
        Index(None, "brand_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    piece_id: Mapped[str | None] = mapped_column(ForeignKey("pieces.id", ondelete="SET NULL"))
    step: Mapped[str | None] = mapped_column(String(32))
    brand_id: Mapped[str | None] = mapped_column(String(64))
    persona_id: Mapped[str | None] = mapped_column(String(64))
    subject_id: Mapped[str | None] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(64))
    amount_usd: Mapped[float] = mapped_column(Float)
    charge_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    """What was paid for (``image:<piece>:<generation>``, ``hooks:<piece>:<platform>``); charged once."""
    detail: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BatchCostTotalORM(Base):
    """A batch's cost of one kind: the sum of its ``cost_entries`` of that kind.

    Kept by database triggers on ``cost_entries`` (migration 0022), never written by the code, so
    reads of a persona's or a batch's totals add up a row per (batch, kind) instead of every entry.
    """

    __tablename__ = "batch_cost_totals"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    amount_usd: Mapped[float] = mapped_column(Float)


class ReviewDecisionORM(Base):
    """A human decision on a piece the policy could not decide; the history is kept, newest wins."""

    __tablename__ = "review_decisions"
    __table_args__ = (
        CheckConstraint(_in("decision", REVIEW_DECISIONS), name="decision"),
        Index(None, "piece_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    piece_id: Mapped[str] = mapped_column(ForeignKey("pieces.id", ondelete="CASCADE"))
    decision: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PublicationORM(Base):
    """One piece on one platform: the exactly-once ledger of publishing.

    ``idempotency_key`` is unique, so two workers can never both own the same post; the platform's
    intermediate id (an Instagram container, an upload id) is stored before the final call, so a
    publish that crashed mid-way resumes with it instead of creating a second post.
    """

    __tablename__ = "publications"
    __table_args__ = (
        UniqueConstraint("piece_id", "platform"),
        CheckConstraint(_in("status", PUBLICATION_STATUSES), name="status"),
        Index(None, "status", "scheduled_for"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    piece_id: Mapped[str] = mapped_column(ForeignKey("pieces.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    publisher: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    scheduled_for: Mapped[datetime | None]
    caption: Mapped[str] = mapped_column(Text, default="")
    media_url: Mapped[str | None] = mapped_column(Text)
    platform_container_id: Mapped[str | None] = mapped_column(String(200))
    platform_post_id: Mapped[str | None] = mapped_column(String(200))
    post_url: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    """The piece's ``moderated_hash`` when scheduled; publishing refuses a piece that no longer matches."""
    claim_token: Mapped[str | None] = mapped_column(String(64))
    """The current claim; only its holder may write the outcome (fenced final write)."""
    claim_expires_at: Mapped[datetime | None]
    """The claim's lease, renewed while the platform call runs; a reclaim waits until it passes."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    published_at: Mapped[datetime | None]


# --- Strategy: topics, blog posts and social posts (contentforge.strategy.store) ---------------------
STRATEGY_STATUSES: tuple[str, ...] = ("proposed", "approved", "rejected")


class TopicORM(Base):
    """A monthly topic for a persona; ``data`` is the whole ``Topic`` (angle, pillar, keywords, source)."""

    __tablename__ = "topics"
    __table_args__ = (
        CheckConstraint(_in("status", STRATEGY_STATUSES), name="status"),
        Index(None, "persona_id", "month"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    persona_id: Mapped[str] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    brand_id: Mapped[str | None] = mapped_column(ForeignKey("brands.id", ondelete="SET NULL"))
    month: Mapped[str] = mapped_column(String(7))
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default="proposed")
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BlogPostORM(Base):
    """A blog post written from a topic; ``source`` says which model (or the offline writer) wrote it."""

    __tablename__ = "blog_posts"
    __table_args__ = (
        CheckConstraint(_in("status", STRATEGY_STATUSES), name="status"),
        Index(None, "topic_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    topic_id: Mapped[str] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    persona_id: Mapped[str] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(300))
    markdown: Mapped[str] = mapped_column(Text)
    word_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="proposed")
    reviewer: Mapped[str | None] = mapped_column(String(120))
    source: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SocialPostORM(Base):
    """One caption per platform derived from a blog post (checked against the platform rules)."""

    __tablename__ = "social_posts"
    __table_args__ = (UniqueConstraint("blog_post_id", "platform"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    blog_post_id: Mapped[str] = mapped_column(ForeignKey("blog_posts.id", ondelete="CASCADE"))
    persona_id: Mapped[str] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    hashtags: Mapped[list[Any]]
    source: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
