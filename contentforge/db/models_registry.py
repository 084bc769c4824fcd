"""ORM tables for the model registry (issue 16): installed models and LoRAs, and feedback scores.

``installed_models`` holds what ``contentforge models install`` verified: where it came from (a hub id,
a CivitAI version id or a local path), the family probed from its tensors (``models.probe``), its
SHA-256 and size, and what the hub said about it (trigger words, weight, tags, description, licence,
rating). ``last_used_at`` drives pruning (least recently used first).

``model_feedback`` accumulates review decisions and 1-5 ratings per LoRA and per parameter value
(``steps:28``), which the recommender and the optimizer read back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from contentforge.db.models import Base, _in, utcnow

MODEL_KINDS: tuple[str, ...] = ("checkpoint", "lora")
MODEL_SOURCES: tuple[str, ...] = ("huggingface", "civitai", "local")
MODEL_FAMILIES: tuple[str, ...] = ("sd15", "sdxl", "flux")
FEEDBACK_SUBJECTS: tuple[str, ...] = ("lora", "param")


class InstalledModelORM(Base):
    __tablename__ = "installed_models"
    __table_args__ = (
        CheckConstraint(_in("kind", MODEL_KINDS), name="kind"),
        CheckConstraint(_in("source", MODEL_SOURCES), name="source"),
        CheckConstraint(_in("family", MODEL_FAMILIES), name="family"),
        Index(None, "kind", "family"),
    )

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    """What personas and commands call it (``registry:<name>`` for a LoRA)."""
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str] = mapped_column(String(500))
    path: Mapped[str] = mapped_column(Text)
    """The verified file (LoRA, single-file checkpoint) or diffusers folder on disk."""
    family: Mapped[str] = mapped_column(String(8))
    family_reason: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    """Of the file; of a folder, the SHA-256 of its files' sorted (name, SHA-256) list."""
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    trigger_words: Mapped[list[Any]]
    recommended_weight: Mapped[float | None] = mapped_column(Float)
    tags: Mapped[list[Any]]
    description: Mapped[str] = mapped_column(Text, default="")
    licence: Mapped[str] = mapped_column(String(300), default="")
    rating: Mapped[float | None] = mapped_column(Float)
    """The hub's rating on 0-1, when it has one."""
    downloads: Mapped[int] = mapped_column(BigInteger, default=0)
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class ModelFeedbackORM(Base):
    __tablename__ = "model_feedback"
    __table_args__ = (
        UniqueConstraint("subject", "key"),
        CheckConstraint(_in("subject", FEEDBACK_SUBJECTS), name="subject"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(200))
    approvals: Mapped[int] = mapped_column(Integer, default=0)
    rejections: Mapped[int] = mapped_column(Integer, default=0)
    rating_total: Mapped[float] = mapped_column(Float, default=0.0)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
