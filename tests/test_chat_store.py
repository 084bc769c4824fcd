"""The conversations repository on SQLite and PostgreSQL: the uniqueness rules the channels rely on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from contentforge.db import Repository, make_engine, migrate
from contentforge.db.chat import ConversationStore
from contentforge.domain.models import Persona, Platform
from contentforge.errors import InvalidInput, UnknownPersona

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = (
        f"sqlite:///{tmp_path / 'chat.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    migrate(url)
    engine = make_engine(url)
    Repository(engine).upsert_persona(
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
    yield engine
    engine.dispose()


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
