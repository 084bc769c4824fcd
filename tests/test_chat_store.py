"""The conversations repository on SQLite and PostgreSQL: the uniqueness rules the channels rely on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from contentforge.db import Repository
from contentforge.db.chat import ConversationStore, ReplyClaimLost, ReplyNoLongerWanted, ReplyNotJudged
from contentforge.domain.models import Persona, Platform
from contentforge.errors import InvalidInput, UnknownPersona

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    Repository(migrated_engine).upsert_persona(
        Persona(
            id="ava",
            name="Ava",
            niche="fitness",
            appearance="tall",
            personality_traits=["upbeat"],
            interests=["running"],
            tone="warm",
            platforms=[Platform.instagram],
        )
    )
    return migrated_engine


@pytest.fixture
def store(engine: Engine) -> ConversationStore:
    return ConversationStore(engine)


def test_a_redelivered_message_is_stored_once_and_reported_as_a_duplicate(store: ConversationStore) -> None:
    first = store.record_inbound(
        persona_id="ava",
        platform="instagram",
        user_id="u1",
        text="hi",
        platform_message_id="m1",
        received_at=T0,
    )
    again = store.record_inbound(
        persona_id="ava",
        platform="instagram",
        user_id="u1",
        text="hi",
        platform_message_id="m1",
        received_at=T0 + timedelta(minutes=5),
    )
    other = store.record_inbound(
        persona_id="ava", platform="x", user_id="u1", text="hi", platform_message_id="m1", received_at=T0
    )

    assert not first.duplicate and again.duplicate and not other.duplicate
    assert again.message.id == first.message.id and again.conversation.id == first.conversation.id
    assert other.conversation.id != first.conversation.id  # one conversation per platform
    assert [m.id for m in store.messages(first.conversation.id)] == [first.message.id]
    assert store.conversation(first.conversation.id).last_inbound_at == T0  # the redelivery changed nothing


def test_one_reply_per_inbound_message_and_a_sent_disclosure_is_recorded(store: ConversationStore) -> None:
    inbound = store.record_inbound(
        persona_id="ava", platform="instagram", user_id="u1", text="hi", received_at=T0
    )
    claim = store.claim_reply(inbound.message.id)
    assert claim is not None and claim.status == "pending"
    assert store.claim_reply(inbound.message.id) is None

    sent = store.finish_outbound(
        claim.id,
        text="AI here. hi!",
        status="sent",
        source="template",
        disclosure=True,
        platform_message_id="o1",
    )
    conversation = store.conversation(inbound.conversation.id)
    assert sent.sent_at is not None and conversation.disclosed and conversation.disclosed_at == sent.sent_at
    assert store.message(inbound.message.id).status == "answered"
    assert store.automated_replies_since(T0 - timedelta(hours=1), persona_id="ava") == 1
    assert store.automated_replies_since(T0 - timedelta(hours=1), conversation_id="nope") == 0


def test_a_failed_reply_does_not_count_as_disclosed(store: ConversationStore) -> None:
    inbound = store.record_inbound(persona_id="ava", platform="api", user_id="u1", text="hi")
    claim = store.claim_reply(inbound.message.id)
    assert claim is not None
    store.finish_outbound(
        claim.id, text="x", status="failed", source="template", disclosure=True, error="boom"
    )
    assert not store.conversation(inbound.conversation.id).disclosed
    assert store.message(inbound.message.id).status == "held"


def test_an_expired_claim_is_taken_over_by_exactly_one_run_and_the_old_holder_is_fenced_out(
    store: ConversationStore,
) -> None:
    inbound = store.record_inbound(persona_id="ava", platform="instagram", user_id="u1", text="hi")
    dead = store.claim_reply(inbound.message.id, lease_s=60, now=T0)
    assert dead is not None and dead.claim_token
    assert store.claim_reply(inbound.message.id, now=T0 + timedelta(seconds=59)) is None  # still live
    assert store.expired_replies(T0 + timedelta(seconds=59)) == []
    assert store.expired_replies(T0 + timedelta(seconds=61)) == [inbound.message.id]

    # Two runners after the expiry: the guarded UPDATE lets one in; the other sees a live claim.
    first = store.claim_reply(inbound.message.id, lease_s=60, now=T0 + timedelta(seconds=61))
    second = store.claim_reply(inbound.message.id, lease_s=60, now=T0 + timedelta(seconds=61))
    assert first is not None and second is None and first.id == dead.id
    assert first.claim_token != dead.claim_token

    with pytest.raises(ReplyClaimLost):  # the old holder can write nothing any more
        store.prepare_reply(
            dead.id, dead.claim_token, text="late", source="template", disclosure=False, cost_usd=0.0,
            generation=None,
        )  # fmt: skip
    assert not store.renew_claim(dead.id, dead.claim_token, T0 + timedelta(hours=1))
    with pytest.raises(ReplyNotJudged):  # nothing judged yet: nothing may be sent
        store.begin_send(first.id, first.claim_token or "")
    store.prepare_reply(
        first.id, first.claim_token or "", text="AI here. hi!", source="template", disclosure=True,
        cost_usd=0.0, generation=None,
    )  # fmt: skip
    assert store.begin_send(first.id, first.claim_token or "") == "AI here. hi!"
    assert store.message(first.id).send_started_at is not None and store.message(first.id).send_attempts == 1
    with pytest.raises(ReplyClaimLost):
        store.finish_outbound(
            first.id, text="AI here. hi!", status="sent", source="template", claim_token=dead.claim_token
        )
    done = store.finish_outbound(
        first.id, text="AI here. hi!", status="sent", source="template", claim_token=first.claim_token
    )
    assert done.status == "sent" and done.claim_token is None and done.claim_expires_at is None
    assert store.expired_replies(T0 + timedelta(days=1)) == []


def test_begin_send_rechecks_the_conversation_and_finishes_an_unwanted_reply(
    store: ConversationStore,
) -> None:
    def judged(user: str, source: str = "model") -> tuple[str, str, str]:
        inbound = store.record_inbound(persona_id="ava", platform="instagram", user_id=user, text="hi")
        claim = store.claim_reply(inbound.message.id)
        assert claim is not None and claim.claim_token
        store.prepare_reply(
            claim.id, claim.claim_token, text="hello!", source=source, disclosure=False, cost_usd=0.0,
            generation=None,
        )  # fmt: skip
        return inbound.conversation.id, claim.id, claim.claim_token

    conversation_id, reply_id, token = judged("u-stop")
    store.opt_out(conversation_id)  # a parallel run handled "stop" while this reply was written
    with pytest.raises(ReplyNoLongerWanted, match="asked to stop meanwhile"):
        store.begin_send(reply_id, token)
    reply = store.message(reply_id)
    assert reply.status == "failed" and reply.send_started_at is None and reply.claim_token is None
    assert store.message(reply.reply_to_id or "").status == "ignored"

    conversation_id, reply_id, token = judged("u-human")
    store.set_state(conversation_id, "human", "a reviewer took over")
    with pytest.raises(ReplyNoLongerWanted, match="took this conversation over meanwhile"):
        store.begin_send(reply_id, token)
    assert store.message(store.message(reply_id).reply_to_id or "").status == "held"

    conversation_id, reply_id, token = judged("u-closed")
    store.set_state(conversation_id, "closed", "done")
    with pytest.raises(ReplyNoLongerWanted, match="closed meanwhile"):
        store.begin_send(reply_id, token)

    conversation_id, reply_id, token = judged("u-notice", source="system")  # its own hand-off notice
    store.set_state(conversation_id, "human", "asked for a human")
    assert store.begin_send(reply_id, token) == "hello!"


def test_unanswered_inbounds_are_received_messages_no_run_ever_claimed(store: ConversationStore) -> None:
    def inbound(user: str, at: datetime) -> str:
        return store.record_inbound(
            persona_id="ava", platform="x", user_id=user, text="hi", received_at=at
        ).message.id

    stranded, claimed, late = inbound("u1", T0), inbound("u2", T0), inbound("u3", T0 + timedelta(minutes=9))
    assert store.claim_reply(claimed) is not None
    assert store.unanswered_inbounds(T0 + timedelta(minutes=5)) == [stranded]
    assert store.unanswered_inbounds(T0 + timedelta(minutes=10)) == [stranded, late]
    assert store.unanswered_inbounds(T0 + timedelta(minutes=10), limit=1) == [stranded]
    store.set_inbound_status(stranded, "held")
    assert store.unanswered_inbounds(T0 + timedelta(minutes=10)) == [late]


def test_states_opt_out_and_bad_input(store: ConversationStore) -> None:
    inbound = store.record_inbound(persona_id="ava", platform="api", user_id="u1", text="hi")
    conversation_id = inbound.conversation.id
    assert store.set_state(conversation_id, "human", "asked for a human").state == "human"
    assert store.conversations(state="human")[0].id == conversation_id
    assert store.opt_out(conversation_id).opted_out
    with pytest.raises(InvalidInput):
        store.set_state(conversation_id, "paused", "?")
    with pytest.raises(InvalidInput):
        store.record_inbound(persona_id="ava", platform="tiktok", user_id="u1", text="hi")
    with pytest.raises(UnknownPersona):
        store.record_inbound(persona_id="nobody", platform="api", user_id="u1", text="hi")
