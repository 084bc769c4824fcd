"""`contentforge chat list|show|takeover|reply|handback` on a temp database (the api channel sends
nothing over the network, so a person's reply is stored and shown)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from contentforge.config import get_settings
from contentforge.db.chat import ConversationStore
from contentforge.domain.models import Persona, Platform
from contentforge.services import Services
from contentforge_cli.context import console
from contentforge_cli.main import app


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_a_person_takes_over_replies_and_hands_back(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "width", 250)  # whole ids in the tables
    services = Services.from_settings(get_settings())
    services.repository.upsert_persona(
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
    store = ConversationStore(services.sessions)
    inbound = store.record_inbound(
        persona_id="ava", platform="api", user_id="fan-1", text="[red]hi[/red] <b>"
    )
    conversation = inbound.conversation.id

    assert run("chat", "reply", conversation, "hello", "--as", "Sam") == (
        2,
        f"error: conversation {conversation} is auto: take it over before replying",
    )
    code, listed = run("chat", "list", "--state", "auto")
    assert code == 0 and conversation in listed and "1 conversation(s)" in listed
    assert run("chat", "takeover", conversation, "--as", "Sam") == (0, f"{conversation}: taken over by Sam")
    assert run("chat", "reply", conversation, "Hi, Sam here.", "--as", "Sam") == (
        0,
        f"{conversation}: sent by Sam",
    )
    code, shown = run("chat", "show", conversation)
    assert code == 0 and "[red]hi[/red] <b>" in shown and "Hi, Sam here." in shown and "state human" in shown
    assert (
        run("chat", "handback", conversation, "--as", "Sam")[1]
        == f"{conversation}: handed back to the persona by Sam"
    )
    assert store.conversation(conversation).state == "auto"

    assert run("chat", "show", "nope") == (2, "error: not a conversation id: 'nope' (32 hex characters)")
    assert run("chat", "show", "0" * 32) == (2, f"error: no conversation with id '{'0' * 32}'")
    assert run("chat", "list", "--state", "paused")[0] == 2
