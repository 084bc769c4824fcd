"""Replies that survive faults: a run killed after its claim, a reply changed after moderation, and
the platform refusing for now or for good (``contentforge.chat.engine``, "Faults").

The standard: a crash, a rerun or a second runner never sends a reply twice, and nothing is sent
that moderation did not judge in exactly that form. The kills are real: a child process runs the
reply engine with ``CONTENTFORGE_FAULT_KILL_AT`` and dies by SIGKILL at the named point
(``contentforge.faults``), on the same SQLite database and loopback Send API as the test. A later
run is an engine whose clock is minutes ahead, so the dead run's lease has run out for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import test_chat_engine
from sqlalchemy import create_engine, text
from support.chat_fakes import FakeDmPlatforms
from support.loopback import LoopbackServer
from test_chat_engine import PERSONA, SECRETS, World
from typer.testing import CliRunner

from contentforge.chat.engine import MAX_SEND_ATTEMPTS, ReplyEngine, refused_before_delivery
from contentforge.config import get_settings
from contentforge.db.chat import ConversationStore
from contentforge.publishing.protocol import TransientError
from contentforge.services import Services
from contentforge_cli.main import app

# The same world as the engine tests: a database copy, the loopback model and Send API.
migrated = test_chat_engine.migrated
world = test_chat_engine.world

CHILD = """
import sys
import time
from contentforge.chat.engine import build_reply_engine
from contentforge.config import Settings
from contentforge.services import Services
settings = Settings()
print(build_reply_engine(settings, Services.from_settings(settings)).reply_to(sys.argv[1]))
"""


def killed_at(point: str, world: World, message_id: str, tmp_path: Path) -> int:
    """Run the reply engine on ``message_id`` in a child process that SIGKILLs itself at ``point``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENTFORGE_")}
    env |= {
        "CONTENTFORGE_DATA_DIR": str(world.settings.data_dir),
        "CONTENTFORGE_TEXT_PROVIDERS": "offline",
        "CONTENTFORGE_INSTAGRAM_GRAPH_URL": world.platforms.url,
        "CONTENTFORGE_INSTAGRAM_USER_ID": FakeDmPlatforms.INSTAGRAM_ACCOUNT,
        "CONTENTFORGE_INSTAGRAM_ACCESS_TOKEN": SECRETS["instagram_access_token"],
        "CONTENTFORGE_ALLOW_PRIVATE_URLS": "*",
        "CONTENTFORGE_FAULT_KILL_AT": point,
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD, message_id], env=env, cwd=tmp_path, capture_output=True, timeout=300
    )
    return child.returncode


def later(world: World, minutes: float) -> ReplyEngine:
    """An engine whose clock is ``minutes`` ahead: a rerun after the dead run's lease ran out."""
    engine = world.engine()
    ahead = timedelta(minutes=minutes)
    engine.clock = lambda: datetime.now(UTC) + ahead
    return engine


def test_a_run_killed_between_claim_and_send_is_taken_over_and_sends_exactly_once(
    world: World, tmp_path: Path
) -> None:
    message_id = world.inbound("hello! my dog is Rex")
    assert killed_at("reply-claimed", world, message_id, tmp_path) == -9
    left = world.store.reply_for(message_id)
    assert left is not None and left.status == "pending" and left.claim_token
    assert left.judged_sha256 is None and left.send_started_at is None
    assert world.platforms.sent == []

    # While the dead run's lease lasts, a rerun does not take the reply over.
    assert world.engine().reply_to(message_id).action == "duplicate"
    assert world.engine().resend_due() == []

    outcome = later(world, 5).reply_to(message_id)
    assert outcome.action == "replied", outcome
    assert world.sent_to("u1") == [outcome.text]
    assert (outcome.text or "").startswith("Hi! Just so you know")
    reply = world.store.message(outcome.reply_id or "")
    assert reply.id == left.id and reply.status == "sent" and reply.claim_token is None
    # A third run and the sweep find nothing to do.
    assert later(world, 10).reply_to(message_id).action == "duplicate"
    assert later(world, 10).resend_due() == []
    assert len(world.platforms.sent) == 1


def test_a_run_killed_after_the_platform_call_is_left_for_a_person_not_sent_twice(
    world: World, tmp_path: Path
) -> None:
    message_id = world.inbound("hello there")
    assert killed_at("reply-sent", world, message_id, tmp_path) == -9
    assert len(world.platforms.sent) == 1  # it did go out; the record of it did not
    left = world.store.reply_for(message_id)
    assert left is not None and left.status == "pending" and left.send_started_at is not None

    outcomes = later(world, 5).resend_due()
    assert [o.action for o in outcomes] == ["failed"]
    assert "may already have arrived" in outcomes[0].reason
    assert len(world.platforms.sent) == 1
    reply = world.store.message(left.id)
    assert reply.status == "failed" and "check the conversation" in (reply.error or "")
    assert world.store.message(message_id).status == "held"
    assert [event for event, _, _ in world.notifier.events] == ["queued"]
    assert later(world, 10).resend_due() == []


def test_a_reply_changed_after_moderation_is_refused_at_the_send(world: World) -> None:
    world.platforms.fail_next(
        429,
        {"error": {"message": "(#4) Application request limit reached", "code": 4}},
        {"Retry-After": "30"},
    )
    first = world.say("hi", world.engine())
    assert first.action == "deferred"
    reply = world.store.message(first.reply_id or "")
    assert reply.status == "pending" and reply.judged_sha256 and reply.claim_token is None
    wait = (reply.claim_expires_at or datetime.now(UTC)) - datetime.now(UTC)
    assert timedelta(seconds=20) < wait <= timedelta(seconds=31)  # Retry-After: 30 is kept
    assert world.engine().resend_due() == []  # not due yet

    database = create_engine(world.settings.resolved_database_url)
    with database.begin() as connection:
        connection.execute(
            text("UPDATE chat_messages SET text = text || ' Visit http://evil.example' WHERE id = :id"),
            {"id": reply.id},
        )
    database.dispose()

    outcomes = later(world, 2).resend_due()
    assert [o.action for o in outcomes] == ["failed"]
    assert "not the text moderation judged" in outcomes[0].reason
    assert world.platforms.sent == []


def test_temporary_refusals_are_retried_with_the_judged_text_a_bounded_number_of_times(world: World) -> None:
    world.platforms.fail_next(503, {"error": {"message": "Service temporarily unavailable"}})
    first = world.say("hello", world.engine())
    assert first.action == "deferred" and "503" in first.reason
    judged = world.store.message(first.reply_id or "").text
    assert [o.action for o in later(world, 5).resend_due()] == ["replied"]
    assert world.sent_to("u1") == [judged]  # the text judged before the 503, sent once
    assert later(world, 10).resend_due() == []

    for _ in range(MAX_SEND_ATTEMPTS):
        world.platforms.fail_next(503, {"error": {"message": "Service temporarily unavailable"}})
    assert world.say("hello again", world.engine(), user="u2").action == "deferred"
    actions = [[o.action for o in later(world, 60 * hours).resend_due()] for hours in (1, 2, 3)]
    assert actions == [["deferred"], ["deferred"], ["failed"]]
    stuck = world.store.reply_for(world.store.messages(world.store.conversations()[0].id)[0].id)
    assert stuck is not None and stuck.status == "failed"
    assert f"not sent after {MAX_SEND_ATTEMPTS} attempts" in (stuck.error or "") and "503" in (
        stuck.error or ""
    )
    assert world.sent_to("u2") == [] and len(world.platforms.sent) == 1
    assert later(world, 300).resend_due() == []


def test_a_permanent_refusal_is_left_for_a_person_with_the_reason_and_never_retried(world: World) -> None:
    world.platforms.fail_next(400, {"error": {"message": "(#551) This person isn't available right now."}})
    outcome = world.say("hello", world.engine())
    assert outcome.action == "failed" and "#551" in outcome.reason
    assert world.notifier.events and world.notifier.events[-1][0] == "queued"
    assert later(world, 60).resend_due() == []
    assert world.platforms.sent == []


def test_only_an_answer_or_a_refused_connection_proves_a_message_was_not_delivered() -> None:
    assert refused_before_delivery(TransientError("instagram: send message answered HTTP 503: busy"))
    assert refused_before_delivery(TransientError("instagram: POST /1/messages failed: ConnectError"))
    assert not refused_before_delivery(TransientError("instagram: POST /1/messages failed: ReadTimeout"))
    assert not refused_before_delivery(TransientError("x: POST /2/dm failed: RemoteProtocolError"))


def test_chat_resend_finishes_a_reply_whose_run_died(settings_env: Path) -> None:
    services = Services.from_settings(get_settings())
    services.repository.upsert_persona(PERSONA)
    store = ConversationStore(services.sessions)
    inbound = store.record_inbound(persona_id=PERSONA.id, platform="api", user_id="site-user", text="hi!")
    dead = store.claim_reply(inbound.message.id, lease_s=1, now=datetime.now(UTC) - timedelta(minutes=5))
    assert dead is not None and dead.status == "pending"

    result = CliRunner().invoke(app, ["chat", "resend"])
    assert result.exit_code == 0, result.output
    assert f"{inbound.message.id}: replied" in result.output and "1 reply(ies) taken over" in result.output
    reply = store.message(dead.id)
    assert reply.status == "sent" and reply.disclosure and "AI" in reply.text
    again = CliRunner().invoke(app, ["chat", "resend"])
    assert "0 reply(ies) taken over" in again.output


def test_a_hand_off_notice_deferred_by_a_429_still_goes_out_once_and_notifies_once(world: World) -> None:
    world.platforms.fail_next(429, {"error": {"message": "(#4) Application request limit reached"}})
    outcome = world.say("can I talk to a real person please", world.engine())
    assert outcome.action == "handed_off" and world.platforms.sent == []
    assert world.store.conversations()[0].state == "human"

    assert [o.action for o in later(world, 5).resend_due()] == ["handed_off"]
    [notice] = world.sent_to("u1")
    assert "a person from the team" in notice and notice.startswith("Hi! Just so you know")
    assert [event for event, _, _ in world.notifier.events] == ["handoff"]
    assert world.store.conversations()[0].state == "human"
    assert later(world, 10).resend_due() == []


class HangsUpAfterReading(LoopbackServer):
    """A Send API that reads the whole request, then closes the connection without an answer: the
    message may well have been delivered (a proxy or the platform dropping the answer)."""

    def __init__(self) -> None:
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                server.requests += 1
                self.close_connection = True  # no status line: the client sees the connection drop

        self._serve(Handler)


def test_a_connection_dropped_after_the_request_left_is_left_for_a_person_not_retried(world: World) -> None:
    with HangsUpAfterReading() as platform:
        engine = world.engine(instagram_graph_url=f"http://127.0.0.1:{platform.port}")
        outcome = world.say("hello", engine)
        assert outcome.action == "failed" and "may already have arrived" in outcome.reason, outcome
        assert platform.requests == 1
        assert later(world, 60).resend_due() == []
    assert world.notifier.events[-1][0] == "queued"


def test_a_live_run_slower_than_its_lease_keeps_its_claim_by_renewing_it(world: World) -> None:
    message_id = world.inbound("hello")
    seen: list[str] = []

    def slow_slot(write):  # type: ignore[no-untyped-def]
        time.sleep(5)  # past the 3 s lease: only the renewals keep the claim
        seen.append(later(world, 0).reply_to(message_id).action)  # a second runner meanwhile
        return write()

    engine = world.engine()
    engine.claim_lease_s, engine.slot = 3.0, slow_slot
    assert engine.reply_to(message_id).action == "replied"
    assert seen == ["duplicate"]
    assert len(world.sent_to("u1")) == 1
