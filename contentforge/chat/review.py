"""What a person does with a conversation: take it over, hand it back, reply themselves.

The API, the gallery page and ``contentforge chat`` all go through these, so the rules are the
same everywhere: a person replies only in a conversation they took over (the persona and a person
never talk over each other), replies on Instagram only inside the 24-hour window, and a hand-back to
the persona keeps an opt-out (the user said stop: the persona stays silent).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contentforge.chat.channels import INSTAGRAM_WINDOW_HOURS, Channel
from contentforge.chat.limits import message_limit
from contentforge.db.chat import ChatMessage, Conversation, ConversationStore
from contentforge.db.models import utcnow
from contentforge.errors import ContentForgeError, InvalidInput
from contentforge.publishing.protocol import PublishError
from contentforge.redaction import redact_text


class ConversationStateError(InvalidInput):
    """The conversation is not in the state the action needs (the API answers 409)."""


def take_over(store: ConversationStore, conversation_id: str, who: str) -> Conversation:
    conversation = store.conversation(conversation_id)
    if conversation.state == "closed":
        raise ConversationStateError(f"conversation {conversation_id} is closed")
    return store.set_state(conversation_id, "human", f"taken over by {who}")


def hand_back(store: ConversationStore, conversation_id: str, who: str) -> Conversation:
    conversation = store.conversation(conversation_id)
    if conversation.state != "human":
        raise ConversationStateError(
            f"conversation {conversation_id} is {conversation.state}, not taken over by a person"
        )
    return store.set_state(conversation_id, "auto", f"handed back by {who}")


def send_human_reply(
    store: ConversationStore,
    channel: Channel,
    conversation_id: str,
    text: str,
    author: str,
    *,
    now: datetime | None = None,
) -> ChatMessage:
    """Send ``text`` as a person; refused (one line) unless the conversation was taken over."""
    text = text.strip()
    conversation = store.conversation(conversation_id)
    if not text:
        raise InvalidInput("the reply is empty")
    limit = message_limit(conversation.platform)
    if len(text) > limit:
        raise InvalidInput(f"the reply has {len(text)} characters; {conversation.platform} allows {limit}")
    if conversation.state != "human":
        raise ConversationStateError(
            f"conversation {conversation_id} is {conversation.state}: take it over before replying"
        )
    last = conversation.last_inbound_at
    if conversation.platform == "instagram" and (
        last is None or (now or utcnow()) - last > timedelta(hours=INSTAGRAM_WINDOW_HOURS)
    ):
        raise ConversationStateError(
            f"the user last wrote more than {INSTAGRAM_WINDOW_HOURS} hours ago: Instagram allows no "
            "standard message now"
        )
    message = store.add_outbound(conversation_id, text, source="human", author=author)
    try:
        platform_id = channel.send(conversation.user_id, text)
    except (PublishError, ContentForgeError) as exc:
        return store.finish_outbound(
            message.id, text=text, status="failed", source="human", error=redact_text(str(exc))[:500]
        )
    return store.finish_outbound(
        message.id, text=text, status="sent", source="human", platform_message_id=platform_id
    )
