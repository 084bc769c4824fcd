"""The conversations repository: inbound messages stored once, one automated reply per inbound.

Every write is one short transaction (``contentforge.db.sessions``). The two guarantees rest on
unique constraints (``models_chat``), not on reads before writes, so they hold between processes:

* ``record_inbound`` inserts with ``ON CONFLICT DO NOTHING`` on ``(platform, platform_message_id)``;
  a redelivered webhook finds its message there and is reported as a duplicate.
* ``claim_reply`` inserts the reply row with ``ON CONFLICT DO NOTHING`` on ``reply_to_id``; only the
  run whose insert landed may write and send the reply.

The claim is a lease, not a lock (the publications' pattern, ``publishing.ledger``): a fresh
``claim_token`` and ``claim_expires_at``, renewed while the run lives (``renew_claim``). A run killed
after its claim leaves a ``pending`` row whose lease runs out; a rerun, or the ``resend-replies``
sweep (``expired_replies``), takes it over with one guarded ``UPDATE … WHERE claim_expires_at <
now``, so of two takers exactly one wins. Every later write of the holder is fenced by its token
(``ReplyClaimLost`` otherwise). ``begin_send`` records ``send_started_at`` before the platform call,
in the same transaction that checks the stored text against ``judged_sha256`` (the hash of what
moderation judged) and hands back the exact text to send.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from contentforge.db.models import PersonaORM, utcnow
from contentforge.db.models_chat import (
    CHAT_PLATFORMS,
    CONVERSATION_STATES,
    ChatMessageORM,
    ConversationORM,
)
from contentforge.db.sessions import RecordNotFound, Store, insert_for, require_aware
from contentforge.errors import ContentForgeError, InvalidInput, UnknownPersona


class ReplyClaimLost(ContentForgeError):
    """The reply's claim is not this run's any more (its lease ran out and another run took over)."""


class ReplyNotJudged(ContentForgeError):
    """The stored reply is not the text moderation judged: it is not sent."""


class ReplyNoLongerWanted(ContentForgeError):
    """The conversation changed while the reply was written (opted out, closed, taken over by a
    person): the reply is finished ``failed`` with that reason and not sent."""


def text_sha256(text: str) -> str:
    """The hash binding a reply to its moderation verdict (UTF-8, exactly as it would be sent)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    claim_token: str | None = None
    claim_expires_at: datetime | None = None
    send_started_at: datetime | None = None
    judged_sha256: str | None = None
    send_attempts: int = 0


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
        claim_token=row.claim_token,
        claim_expires_at=row.claim_expires_at,
        send_started_at=row.send_started_at,
        judged_sha256=row.judged_sha256,
        send_attempts=row.send_attempts or 0,
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

    def claim_reply(
        self, inbound_id: str, *, lease_s: float = 60.0, now: datetime | None = None
    ) -> ChatMessage | None:
        """This run's claim on the reply to ``inbound_id`` (a lease of ``lease_s`` seconds), or None.

        The first run inserts the ``pending`` row. A later run takes the row over only when it is
        still ``pending`` and its lease (or the wait before a retry) ran out before ``now``: the
        returned row then carries what the dead run left (its judged text, ``send_started_at``).
        None: another run holds a live claim, or the reply is finished.
        """
        now = now or utcnow()
        require_aware("now", now)
        token = _new_id()
        expires = now + timedelta(seconds=lease_s)
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
                    claim_token=token,
                    claim_expires_at=expires,
                    send_attempts=0,
                )
                .on_conflict_do_nothing(index_elements=["reply_to_id"])
                .returning(ChatMessageORM.id)
            )
            if result.first() is None:
                taken = session.execute(
                    update(ChatMessageORM)
                    .where(
                        ChatMessageORM.reply_to_id == inbound_id,
                        ChatMessageORM.status == "pending",
                        ChatMessageORM.claim_expires_at < now,
                    )
                    .values(claim_token=token, claim_expires_at=expires)
                    .execution_options(synchronize_session=False)
                )
                if cast(CursorResult[Any], taken).rowcount != 1:  # an UPDATE's result is a cursor result
                    return None
            row = session.scalars(
                select(ChatMessageORM)
                .where(ChatMessageORM.reply_to_id == inbound_id)
                .execution_options(populate_existing=True)
            ).one()
            return _message(row)

    def reply_for(self, inbound_id: str) -> ChatMessage | None:
        """The automated reply row of ``inbound_id``, whatever its status; None before any claim."""
        with self._db.read() as session:
            row = session.scalars(
                select(ChatMessageORM).where(ChatMessageORM.reply_to_id == inbound_id)
            ).first()
            return None if row is None else _message(row)

    def renew_claim(self, message_id: str, claim_token: str, until: datetime) -> bool:
        """Extend the claim to ``until``; False when it is not ``claim_token``'s any more."""
        with self._db.write() as session:
            result = session.execute(
                update(ChatMessageORM)
                .where(*_held(message_id, claim_token))
                .values(claim_expires_at=until)
                .execution_options(synchronize_session=False)
            )
            return cast(CursorResult[Any], result).rowcount == 1

    def prepare_reply(
        self,
        message_id: str,
        claim_token: str,
        *,
        text: str,
        source: str,
        disclosure: bool,
        cost_usd: float,
        generation: dict[str, Any] | None,
    ) -> ChatMessage:
        """Store the reply moderation judged, with its hash, before anything is sent (fenced)."""
        with self._db.write() as session:
            row = self._held_row(session, message_id, claim_token)
            row.text, row.source, row.disclosure = text, source, disclosure
            row.cost_usd, row.generation, row.judged_sha256 = cost_usd, generation, text_sha256(text)
            session.flush()
            return _message(row)

    def begin_send(self, message_id: str, claim_token: str, at: datetime | None = None) -> str:
        """The exact text to send, after recording that the platform call starts now (fenced).

        ``ReplyNotJudged`` (nothing recorded) when the stored text is not the judged one: changed
        after moderation, or never judged.

        ``ReplyNoLongerWanted`` when the conversation was opted out, closed or taken over by a person
        while the reply was being written (seconds): the engine read the state before writing, so
        it is read again here, under a lock on the conversation, in the transaction that starts the
        send. The reply is then finished ``failed`` ("… meanwhile") and its inbound ``ignored`` or
        ``held``. A hand-off notice (source ``system``) still goes out to a ``human`` conversation.
        """
        with self._db.write() as session:
            row = self._held_row(session, message_id, claim_token)
            conversation = self._load_conversation(session, row.conversation_id, for_update=True)
            unwanted = _no_longer_wanted(conversation, row)
            if unwanted is None:
                if row.judged_sha256 is None or text_sha256(row.text) != row.judged_sha256:
                    raise ReplyNotJudged(
                        f"reply {message_id}: the stored text is not the text moderation judged; not sent"
                    )
                row.send_started_at = at or utcnow()
                row.send_attempts = (row.send_attempts or 0) + 1
                return row.text
            reason, inbound_status = unwanted
            row.status, row.error = "failed", reason
            row.claim_token = row.claim_expires_at = None
            if row.reply_to_id is not None:
                self._load_message(session, row.reply_to_id, for_update=True).status = inbound_status
        raise ReplyNoLongerWanted(f"reply {message_id}: {reason}")

    def release_for_retry(
        self, message_id: str, claim_token: str, retry_at: datetime, error: str
    ) -> ChatMessage:
        """The platform refused for now and sent nothing: free the claim until ``retry_at`` (fenced).

        The row stays ``pending`` with its judged text, so the run that takes it over after
        ``retry_at`` (the sweep) sends that same text.
        """
        require_aware("retry_at", retry_at)
        with self._db.write() as session:
            row = self._held_row(session, message_id, claim_token)
            row.claim_token, row.claim_expires_at = None, retry_at
            row.send_started_at, row.error = None, error
            session.flush()
            return _message(row)

    def expired_replies(self, now: datetime, *, limit: int = 50) -> list[str]:
        """Inbound ids whose ``pending`` reply may be taken over at ``now`` (oldest first)."""
        require_aware("now", now)
        with self._db.read() as session:
            ids = session.scalars(
                select(ChatMessageORM.reply_to_id)
                .where(
                    ChatMessageORM.status == "pending",
                    ChatMessageORM.reply_to_id.is_not(None),
                    ChatMessageORM.claim_expires_at < now,
                )
                .order_by(ChatMessageORM.claim_expires_at, ChatMessageORM.id)
                .limit(limit)
            ).all()
            return [inbound_id for inbound_id in ids if inbound_id is not None]

    def unanswered_inbounds(self, before: datetime, *, limit: int = 50) -> list[str]:
        """Inbound ids still ``received``, sent before ``before``, with no reply row: no reply run
        ever claimed them (it was never started, or never ran). Oldest first."""
        require_aware("before", before)
        replies = aliased(ChatMessageORM)
        with self._db.read() as session:
            return list(
                session.scalars(
                    select(ChatMessageORM.id)
                    .where(
                        ChatMessageORM.direction == "inbound",
                        ChatMessageORM.status == "received",
                        ChatMessageORM.created_at < before,
                        ~exists().where(replies.reply_to_id == ChatMessageORM.id),
                    )
                    .order_by(ChatMessageORM.created_at, ChatMessageORM.id)
                    .limit(limit)
                ).all()
            )

    def _held_row(self, session: Session, message_id: str, claim_token: str) -> ChatMessageORM:
        row = session.scalars(
            select(ChatMessageORM).where(*_held(message_id, claim_token)).with_for_update()
        ).first()
        if row is None:
            raise ReplyClaimLost(
                f"reply {message_id}: claim {claim_token[:8]} is no longer held (its lease ran out and "
                "another run took it over, or the reply is finished); this run writes nothing more"
            )
        return row

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
        claim_token: str | None = None,
    ) -> ChatMessage:
        """Record what was sent (or why not); a sent disclosure marks the conversation disclosed.

        ``claim_token``: an automated reply's claim, which must still be held (``ReplyClaimLost``
        otherwise); the claim ends here.
        """
        with self._db.write() as session:
            if claim_token is not None:
                row = self._held_row(session, message_id, claim_token)
            else:
                row = self._load_message(session, message_id, for_update=True)
            row.claim_token = row.claim_expires_at = None
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


def _no_longer_wanted(conversation: ConversationORM, reply: ChatMessageORM) -> tuple[str, str] | None:
    """Why the automated ``reply`` must not be sent now, and its inbound's new status; None if it may."""
    if conversation.opted_out:
        return "not sent: the user asked to stop meanwhile", "ignored"
    if conversation.state == "closed":
        return "not sent: the conversation was closed meanwhile", "ignored"
    if conversation.state == "human" and reply.source != "system":  # its own hand-off notice may go
        return "not sent: a person took this conversation over meanwhile", "held"
    return None


def _held(message_id: str, claim_token: str) -> tuple[Any, ...]:
    """The fence of every write a claim holder makes: its row, still pending, still its claim."""
    return (
        ChatMessageORM.id == message_id,
        ChatMessageORM.status == "pending",
        ChatMessageORM.claim_token == claim_token,
    )
