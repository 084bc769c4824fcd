"""ContentForge's own DM channel and the review actions on conversations (docs/chat.md).

``POST /dm/messages`` is for sites that embed a chat: their backend sends what a user wrote (with
the full token) and gets 202 at once; the persona's reply appears in ``GET /dm/conversations/{id}``
once the ``reply-to-message`` flow run wrote it. Take-over, hand-back and a person's reply work for
every channel. Every conversation carries ``disclosed``: whether the AI disclosure was sent in it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, status
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from contentforge.chat.channels import build_channel
from contentforge.chat.review import ConversationStateError, hand_back, send_human_reply, take_over
from contentforge.db import RecordNotFound
from contentforge.db.chat import ChatMessage, Conversation
from contentforge.domain.models import ID_PATTERN
from contentforge_api.auth import reviewer_for
from contentforge_api.dm_launcher import ReplyLauncher, accept_inbound, conversation_store, reply_launcher
from contentforge_api.errors import ApiError
from contentforge_api.state import Reader, State, Writer

router = APIRouter(tags=["direct messages"])
Launcher = Annotated[ReplyLauncher, Depends(reply_launcher)]
ConversationId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
USER_ID = r"^[A-Za-z0-9_.:@-]{1,200}$"


def _error(description: str) -> dict[str, Any]:
    """An error answer in OpenAPI; the body is always ``{"error": {"code", "message"}}``."""
    return {"description": description}


AUTH = {401: _error("No or a wrong bearer token."), 403: _error("A read-only token for a write.")}
NOT_FOUND = {404: _error("No conversation with this id.")}
CONFLICT = {409: _error("The conversation is not in a state that allows this.")}


class MessageIn(BaseModel):
    persona_id: str = Field(pattern=ID_PATTERN, description="The persona the user writes to.")
    user_id: str = Field(pattern=USER_ID, description="The site's id for the user (not their name).")
    text: str = Field(min_length=1, max_length=2000)
    message_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:-]{1,120}$",
        description="The site's id for this message: a retry with the same id is stored once.",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class MessageOut(BaseModel):
    id: str
    direction: str
    text: str
    status: str
    source: str | None
    author: str | None
    disclosure: bool
    cost_usd: float
    created_at: datetime
    sent_at: datetime | None


class ConversationOut(BaseModel):
    id: str
    persona_id: str
    platform: str
    user_id: str
    state: str
    state_reason: str | None
    opted_out: bool
    disclosed: bool
    disclosed_at: datetime | None
    last_inbound_at: datetime | None
    updated_at: datetime


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]


class Accepted(BaseModel):
    conversation_id: str
    message_id: str
    duplicate: bool
    reply_started: bool
    flow_run_id: str | None
    state: str
    opted_out: bool
    disclosed: bool


class HumanReply(BaseModel):
    text: str = Field(min_length=1, max_length=10_000)


def _conversation_out(conversation: Conversation) -> ConversationOut:
    return ConversationOut(**{name: getattr(conversation, name) for name in ConversationOut.model_fields})


def _message_out(message: ChatMessage) -> MessageOut:
    return MessageOut(**{name: getattr(message, name) for name in MessageOut.model_fields})


def _detail(state: State, conversation_id: str) -> ConversationDetail:
    store = conversation_store(state)
    try:
        conversation = store.conversation(conversation_id)
    except RecordNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    messages = [_message_out(m) for m in store.messages(conversation_id)]
    return ConversationDetail(**_conversation_out(conversation).model_dump(), messages=messages)


@router.post(
    "/dm/messages",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**AUTH, 422: _error("Bad input or an unknown persona.")},
)
async def post_message(state: State, _identity: Writer, launcher: Launcher, body: MessageIn) -> Accepted:
    """Store what the user wrote and start the persona's reply (202; the reply comes later)."""
    accepted = await accept_inbound(
        state,
        launcher,
        persona_id=body.persona_id,
        platform="api",
        user_id=body.user_id,
        text=body.text,
        platform_message_id=body.message_id and f"{body.persona_id}:{body.user_id}:{body.message_id}",
    )
    conversation = accepted.inbound.conversation
    return Accepted(
        conversation_id=conversation.id,
        message_id=accepted.inbound.message.id,
        duplicate=accepted.inbound.duplicate,
        reply_started=accepted.launched,
        flow_run_id=accepted.flow_run_id,
        state=conversation.state,
        opted_out=conversation.opted_out,
        disclosed=conversation.disclosed,
    )


@router.get("/dm/conversations", response_model=list[ConversationOut], responses={**AUTH})
def list_conversations(
    state: State,
    _identity: Reader,
    persona_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    conversation_state: Annotated[str | None, Query(alias="state", pattern="^(auto|human|closed)$")] = None,
    platform: Annotated[str | None, Query(pattern="^(instagram|x|api)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ConversationOut]:
    """Most recently active first; ``state=human`` lists what waits for a person."""
    conversations = conversation_store(state).conversations(
        persona_id=persona_id, state=conversation_state, platform=platform, limit=limit
    )
    return [_conversation_out(c) for c in conversations]


@router.get(
    "/dm/conversations/{conversation_id}", response_model=ConversationDetail, responses={**AUTH, **NOT_FOUND}
)
def get_conversation(state: State, _identity: Reader, conversation_id: ConversationId) -> ConversationDetail:
    """The conversation and every message, oldest first (a person's replies name their author)."""
    return _detail(state, conversation_id)


def _act(state: State, conversation_id: str, action: Any, who: str) -> ConversationDetail:
    try:
        action(conversation_store(state), conversation_id, who)
    except RecordNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    except ConversationStateError as exc:
        raise ApiError(409, str(exc)) from exc
    return _detail(state, conversation_id)


@router.post(
    "/dm/conversations/{conversation_id}/takeover",
    response_model=ConversationDetail,
    responses={**AUTH, **NOT_FOUND, **CONFLICT},
)
def takeover(
    state: State, identity: Writer, conversation_id: ConversationId, request: Request
) -> ConversationDetail:
    """A person takes over: the persona stays silent until hand-back."""
    return _act(state, conversation_id, take_over, reviewer_for(identity, request))


@router.post(
    "/dm/conversations/{conversation_id}/handback",
    response_model=ConversationDetail,
    responses={**AUTH, **NOT_FOUND, **CONFLICT},
)
def handback(
    state: State, identity: Writer, conversation_id: ConversationId, request: Request
) -> ConversationDetail:
    """The persona answers again (never after the user said stop: the opt-out stays)."""
    return _act(state, conversation_id, hand_back, reviewer_for(identity, request))


@router.post(
    "/dm/conversations/{conversation_id}/replies",
    response_model=MessageOut,
    responses={
        **AUTH,
        **NOT_FOUND,
        **CONFLICT,
        422: _error("Empty or too long for the platform."),
        502: _error("The platform refused the message (recorded as failed)."),
    },
)
async def human_reply(
    state: State, identity: Writer, conversation_id: ConversationId, body: HumanReply, request: Request
) -> MessageOut:
    """A person's reply, in a conversation they took over; sent through the conversation's channel."""
    author = reviewer_for(identity, request)
    store = conversation_store(state)

    def send() -> ChatMessage:
        conversation = store.conversation(conversation_id)
        channel = build_channel(conversation.platform, state.settings)
        return send_human_reply(store, channel, conversation_id, body.text, author)

    try:
        message = await run_in_threadpool(send)
    except RecordNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    except ConversationStateError as exc:
        raise ApiError(409, str(exc)) from exc
    if message.status == "failed":
        raise ApiError(502, message.error or "the platform refused the message", code="platform_error")
    return _message_out(message)
