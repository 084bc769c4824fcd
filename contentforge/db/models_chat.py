"""ORM tables for persona conversations (issue 17): ``conversations`` and ``chat_messages``.

Two uniqueness rules carry the channel guarantees, so they hold across processes and workers:

* ``(platform, platform_message_id)`` is unique: a webhook delivered twice stores its message once,
  and the second delivery is recognised as a duplicate (NULLs, for outbound messages not yet sent,
  never collide on either backend).
* ``reply_to_id`` is unique: at most one automated reply row can exist per inbound message, however
  many flow runs try to answer it (a redelivery, a retry, a second worker).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
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

CHAT_PLATFORMS: tuple[str, ...] = ("instagram", "x", "api")
"""``api``: ContentForge's own DM API, for sites that embed a chat."""
CONVERSATION_STATES: tuple[str, ...] = ("auto", "human", "closed")
"""``auto``: the persona replies; ``human``: a person took over, the persona stays silent."""
MESSAGE_DIRECTIONS: tuple[str, ...] = ("inbound", "outbound")
MESSAGE_STATUSES: tuple[str, ...] = (
    "received",  # inbound, waiting for its reply
    "answered",  # inbound, an automated reply was sent
    "held",  # inbound, left for a person (human state, hand-off, outside the window, rate limit)
    "ignored",  # inbound, no reply by rule (opted out, closed, a "stop")
    "pending",  # outbound, claimed by a reply run (or waiting for a retry), not sent yet
    "sent",  # outbound, delivered to the platform (or stored for the API channel)
    "failed",  # outbound, not sent and left for a person (refused, unjudged text, maybe sent)
)


class ConversationORM(Base):
    """One user talking to one persona on one platform."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("persona_id", "platform", "user_id"),
        CheckConstraint(_in("platform", CHAT_PLATFORMS), name="platform"),
        CheckConstraint(_in("state", CONVERSATION_STATES), name="state"),
        Index(None, "state", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    persona_id: Mapped[str] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(200))
    """The other person's id on the platform (Instagram-scoped id, X user id, the site's user id)."""
    thread_id: Mapped[str | None] = mapped_column(String(200))
    """The platform's conversation id where it has one (X dm_conversation_id); else NULL."""
    state: Mapped[str] = mapped_column(String(8), default="auto")
    state_reason: Mapped[str | None] = mapped_column(Text)
    """Why the state last changed (a hand-off rule, who took over); never the user's text."""
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    disclosed: Mapped[bool] = mapped_column(Boolean, default=False)
    """True once an automated reply saying the persona is AI-run was sent in this conversation."""
    disclosed_at: Mapped[datetime | None]
    last_inbound_at: Mapped[datetime | None]
    """When the user last wrote: Instagram allows a standard reply only within 24 hours of it."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChatMessageORM(Base):
    """One message in a conversation, either way, with what produced it and what it cost."""

    __tablename__ = "chat_messages"
    __table_args__ = (
        UniqueConstraint("platform", "platform_message_id"),
        UniqueConstraint("reply_to_id"),
        CheckConstraint(_in("direction", MESSAGE_DIRECTIONS), name="direction"),
        CheckConstraint(_in("status", MESSAGE_STATUSES), name="status"),
        Index(None, "conversation_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(8))
    platform: Mapped[str] = mapped_column(String(16))
    platform_message_id: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8))
    reply_to_id: Mapped[str | None] = mapped_column(String(64))
    """The inbound message an automated reply answers (unique: one reply per inbound)."""
    source: Mapped[str | None] = mapped_column(String(32))
    """Who wrote an outbound message: a text provider (``openai``, ``local``...), ``template``
    (the offline replies), ``system`` (hand-off notices) or ``human``."""
    author: Mapped[str | None] = mapped_column(String(120))
    """The person who sent a human reply."""
    disclosure: Mapped[bool] = mapped_column(Boolean, default=False)
    """This outbound message carries the AI disclosure."""
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    generation: Mapped[dict[str, Any] | None]
    """Provider, model, tokens, fallbacks, moderation and guard notes, whether an LLM slot was held."""
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(64))
    """The reply run holding this ``pending`` reply; every write it makes is fenced by it."""
    claim_expires_at: Mapped[datetime | None]
    """When a ``pending`` reply may be taken over: the holder's lease end (renewed while it lives),
    or, with no holder, when a temporary refusal may be retried. NULL: never taken over."""
    send_started_at: Mapped[datetime | None]
    """Written just before the platform call: a claim that expires after it may have been sent."""
    judged_sha256: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of the exact text moderation judged; the send refuses any other text."""
    send_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Platform calls made for this reply (bounds the retries of temporary refusals)."""
