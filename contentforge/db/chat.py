"""The conversations repository: inbound messages stored once, one automated reply per inbound.

Every write is one short transaction (``contentforge.db.sessions``). The two guarantees rest on
unique constraints (``models_chat``), not on reads before writes, so they hold between processes:

* ``record_inbound`` inserts with ``ON CONFLICT DO NOTHING`` on ``(platform, platform_message_id)``;
  a redelivered webhook finds its message there and is reported as a duplicate.
* ``claim_reply`` inserts the reply row with ``ON CONFLICT DO NOTHING`` on ``reply_to_id``; only the
  run whose insert landed may write and send the reply.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contentforge.db.models import PersonaORM, utcnow
from contentforge.db.models_chat import (
    CHAT_PLATFORMS,
    CONVERSATION_STATES,
    ChatMessageORM,
    ConversationORM,
)
from contentforge.db.sessions import RecordNotFound, Store, insert_for, require_aware
from contentforge.errors import InvalidInput, UnknownPersona


@dataclass(frozen=True)
class Conversation:
    id: str
    persona_id: str
    platform: str
    user_id: str
    thread_id: str | None
    state: str
    state_reason: str | None
    opted_out: bool
    disclosed: bool
    disclosed_at: datetime | None
    last_inbound_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ChatMessage:
    id: str
    conversation_id: str
    direction: str
    platform: str
    platform_message_id: str | None
    text: str
    status: str
    reply_to_id: str | None
    source: str | None
    author: str | None
    disclosure: bool
    cost_usd: float
    generation: dict[str, Any] | None
    error: str | None
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class Inbound:
    """What ``record_inbound`` did: the stored message, its conversation, and whether it was new."""

    conversation: Conversation
    message: ChatMessage
    duplicate: bool


def _conversation(row: ConversationORM) -> Conversation:
    return Conversation(
        id=row.id,
        persona_id=row.persona_id,
        platform=row.platform,
        user_id=row.user_id,
        thread_id=row.thread_id,
        state=row.state,
        state_reason=row.state_reason,
        opted_out=row.opted_out,
        disclosed=row.disclosed,
        disclosed_at=row.disclosed_at,
        last_inbound_at=row.last_inbound_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _message(row: ChatMessageORM) -> ChatMessage:
    return ChatMessage(
        id=row.id,
        conversation_id=row.conversation_id,
        direction=row.direction,
        platform=row.platform,
        platform_message_id=row.platform_message_id,
        text=row.text,
        status=row.status,
        reply_to_id=row.reply_to_id,
        source=row.source,
        author=row.author,
        disclosure=row.disclosure,
        cost_usd=row.cost_usd,
        generation=row.generation,
        error=row.error,
        created_at=row.created_at,
        sent_at=row.sent_at,
    )


def _new_id() -> str:
    return uuid.uuid4().hex


class ConversationStore(Store):
    """Conversations and their messages on the ContentForge database."""

    # --- inbound -------------------------------------------------------------------------------

    def record_inbound(
        self,
        *,
        persona_id: str,
        platform: str,
        user_id: str,
        text: str,
        platform_message_id: str | None = None,
        thread_id: str | None = None,
        received_at: datetime | None = None,
    ) -> Inbound:
        """Store one message from ``user_id`` to the persona, creating the conversation if needed.

        ``platform_message_id``: the platform's id (the API channel makes one when the caller sends
        none); a second call with the same id stores nothing and returns ``duplicate=True``.
        """
        if platform not in CHAT_PLATFORMS:
            raise InvalidInput(f"unknown chat platform {platform!r}; use {', '.join(CHAT_PLATFORMS)}")
        received_at = received_at or utcnow()
        require_aware("received_at", received_at)
        message_id = platform_message_id or f"cf-{_new_id()}"
        with self._db.write() as session:
            if session.get(PersonaORM, persona_id) is None:
                raise UnknownPersona(f"no persona with id {persona_id!r}")
            conversation = self._conversation_for(session, persona_id, platform, user_id, thread_id)
            inserted = session.execute(
                insert_for(session, ChatMessageORM)
                .values(
                    id=_new_id(),
                    conversation_id=conversation.id,
                    direction="inbound",
                    platform=platform,
                    platform_message_id=message_id,
                    text=text,
                    status="received",
                    disclosure=False,
                    cost_usd=0.0,
                    created_at=received_at,
                )
                .on_conflict_do_nothing(index_elements=["platform", "platform_message_id"])
                .returning(ChatMessageORM.id)
            )
            # RETURNING, not rowcount: an ORM-enabled INSERT does not report rowcount on every driver.
            duplicate = inserted.first() is None
            stored = session.scalars(
                select(ChatMessageORM).where(
                    ChatMessageORM.platform == platform, ChatMessageORM.platform_message_id == message_id
                )
            ).one()
            if not duplicate and (
                conversation.last_inbound_at is None or conversation.last_inbound_at < received_at
            ):
                conversation.last_inbound_at = received_at
                conversation.updated_at = utcnow()
            session.flush()
            return Inbound(_conversation(conversation), _message(stored), duplicate)

    def _conversation_for(
        self, session: Session, persona_id: str, platform: str, user_id: str, thread_id: str | None
    ) -> ConversationORM:
        session.execute(
            insert_for(session, ConversationORM)
            .values(
                id=_new_id(),
                persona_id=persona_id,
                platform=platform,
                user_id=user_id,
                thread_id=thread_id,
                state="auto",
                opted_out=False,
                disclosed=False,
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["persona_id", "platform", "user_id"])
        )
        row = session.scalars(
            select(ConversationORM)
            .where(
                ConversationORM.persona_id == persona_id,
                ConversationORM.platform == platform,
                ConversationORM.user_id == user_id,
            )
            .with_for_update()
        ).one()
        if thread_id and row.thread_id is None:
            row.thread_id = thread_id
        return row

    def set_inbound_status(self, message_id: str, status: str) -> None:
        with self._db.write() as session:
            row = self._load_message(session, message_id)
            if row.direction != "inbound":
                raise InvalidInput(f"message {message_id!r} is not an inbound message")
            row.status = status

    # --- replies -------------------------------------------------------------------------------

    def claim_reply(self, inbound_id: str) -> ChatMessage | None:
        """A ``pending`` reply row for ``inbound_id``, or None when another run already claimed one."""
        with self._db.write() as session:
            inbound = self._load_message(session, inbound_id)
            result = session.execute(
                insert_for(session, ChatMessageORM)
                .values(
                    id=_new_id(),
                    conversation_id=inbound.conversation_id,
                    direction="outbound",
                    platform=inbound.platform,
                    text="",
                    status="pending",
                    reply_to_id=inbound_id,
                    disclosure=False,
                    cost_usd=0.0,
                    created_at=utcnow(),
                )
                .on_conflict_do_nothing(index_elements=["reply_to_id"])
                .returning(ChatMessageORM.id)
            )
            if result.first() is None:
                return None
            row = session.scalars(
                select(ChatMessageORM).where(ChatMessageORM.reply_to_id == inbound_id)
            ).one()
            return _message(row)

    def add_outbound(
        self, conversation_id: str, text: str, *, source: str, author: str | None = None
    ) -> ChatMessage:
        """A ``pending`` outbound message that answers nothing in particular (a person's reply)."""
        with self._db.write() as session:
            conversation = self._load_conversation(session, conversation_id)
            row = ChatMessageORM(
                id=_new_id(),
                conversation_id=conversation_id,
                direction="outbound",
                platform=conversation.platform,
                text=text,
                status="pending",
                source=source,
                author=author,
                disclosure=False,
                cost_usd=0.0,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return _message(row)

    def finish_outbound(
        self,
        message_id: str,
        *,
        text: str,
        status: str,
        source: str,
        disclosure: bool = False,
        cost_usd: float = 0.0,
        generation: dict[str, Any] | None = None,
        platform_message_id: str | None = None,
        error: str | None = None,
    ) -> ChatMessage:
        """Record what was sent (or why not); a sent disclosure marks the conversation disclosed."""
        with self._db.write() as session:
            row = self._load_message(session, message_id, for_update=True)
            row.text, row.status, row.source = text, status, source
            row.disclosure, row.cost_usd, row.generation, row.error = disclosure, cost_usd, generation, error
            if platform_message_id is not None:
                row.platform_message_id = platform_message_id
            if status == "sent":
                row.sent_at = utcnow()
                if disclosure:
                    conversation = self._load_conversation(session, row.conversation_id, for_update=True)
                    if not conversation.disclosed:
                        conversation.disclosed, conversation.disclosed_at = True, row.sent_at
            if row.reply_to_id is not None:
                inbound = self._load_message(session, row.reply_to_id)
                inbound.status = "answered" if status == "sent" else "held"
            session.flush()
            return _message(row)

    # --- conversation state --------------------------------------------------------------------

    def set_state(self, conversation_id: str, state: str, reason: str) -> Conversation:
        if state not in CONVERSATION_STATES:
            raise InvalidInput(f"unknown conversation state {state!r}; use {', '.join(CONVERSATION_STATES)}")
        with self._db.write() as session:
            row = self._load_conversation(session, conversation_id, for_update=True)
            row.state, row.state_reason, row.updated_at = state, reason, utcnow()
            return _conversation(row)

    def opt_out(self, conversation_id: str) -> Conversation:
        """The user asked to stop: no automated message is sent in this conversation again."""
        with self._db.write() as session:
            row = self._load_conversation(session, conversation_id, for_update=True)
            row.opted_out, row.state_reason, row.updated_at = True, "the user asked to stop", utcnow()
            return _conversation(row)

    # --- reads ---------------------------------------------------------------------------------

    def conversation(self, conversation_id: str) -> Conversation:
        with self._db.read() as session:
            return _conversation(self._load_conversation(session, conversation_id))

    def message(self, message_id: str) -> ChatMessage:
        with self._db.read() as session:
            return _message(self._load_message(session, message_id))

    def messages(self, conversation_id: str, *, limit: int | None = None) -> list[ChatMessage]:
        """The conversation's messages oldest first; with ``limit``, only the newest ``limit``."""
        with self._db.read() as session:
            query = select(ChatMessageORM).where(ChatMessageORM.conversation_id == conversation_id)
            if limit is None:
                rows = session.scalars(query.order_by(ChatMessageORM.created_at, ChatMessageORM.id)).all()
            else:
                rows = list(
                    reversed(
                        session.scalars(
                            query.order_by(ChatMessageORM.created_at.desc(), ChatMessageORM.id.desc()).limit(
                                limit
                            )
                        ).all()
                    )
                )
            return [_message(r) for r in rows]

    def conversations(
        self,
        *,
        persona_id: str | None = None,
        state: str | None = None,
        platform: str | None = None,
        limit: int = 100,
    ) -> list[Conversation]:
        """Most recently active first."""
        with self._db.read() as session:
            query = select(ConversationORM)
            if persona_id is not None:
                query = query.where(ConversationORM.persona_id == persona_id)
            if state is not None:
                query = query.where(ConversationORM.state == state)
            if platform is not None:
                query = query.where(ConversationORM.platform == platform)
            rows = session.scalars(
                query.order_by(ConversationORM.updated_at.desc(), ConversationORM.id).limit(limit)
            ).all()
            return [_conversation(r) for r in rows]

    def automated_replies_since(
        self, since: datetime, *, conversation_id: str | None = None, persona_id: str | None = None
    ) -> int:
        """Automated replies (any outbound but a person's) claimed since ``since``: the rate limits."""
        require_aware("since", since)
        with self._db.read() as session:
            query = select(func.count(ChatMessageORM.id)).where(
                ChatMessageORM.direction == "outbound",
                ChatMessageORM.reply_to_id.is_not(None),
                ChatMessageORM.created_at >= since,
            )
            if conversation_id is not None:
                query = query.where(ChatMessageORM.conversation_id == conversation_id)
            if persona_id is not None:
                query = query.join(ConversationORM).where(ConversationORM.persona_id == persona_id)
            return int(session.scalar(query) or 0)

    # --- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _load_conversation(
        session: Session, conversation_id: str, *, for_update: bool = False
    ) -> ConversationORM:
        row = session.get(ConversationORM, conversation_id, with_for_update=for_update)
        if row is None:
            raise RecordNotFound(f"no conversation with id {conversation_id!r}")
        return row

    @staticmethod
    def _load_message(session: Session, message_id: str, *, for_update: bool = False) -> ChatMessageORM:
        row = session.get(ChatMessageORM, message_id, with_for_update=for_update)
        if row is None:
            raise RecordNotFound(f"no message with id {message_id!r}")
        return row
