"""DM channels end to end: signed webhooks and the DM API → reply-to-message flow runs → the send APIs.

The app runs under FastAPI's TestClient with ``InProcessReplyLauncher``: each stored message starts a
real ``reply-to-message`` flow run on the session's Prefect server, in this process, holding a slot
of the ``llm`` limit; replies go to loopback servers speaking Instagram's Send API and X's DM API.
The engine's rules are tested in ``test_chat_engine.py``; here, what the channels add: signatures,
handshakes, redeliveries, the 24-hour window and stop through a webhook, and the review actions.
One app and one database serve the module (each test uses its own users), to keep it fast.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from support.chat_fakes import FakeDmPlatforms

from contentforge.chat.webhooks import meta_signature, x_signature
from contentforge.config import get_settings
from contentforge.db.chat import ConversationStore
from contentforge.domain.models import Persona, Platform
from contentforge.services import Services
from contentforge_api import create_app
from contentforge_api.dm_launcher import InProcessReplyLauncher
from contentforge_api.launcher import PrefectUnavailable

pytestmark = pytest.mark.slow
APP_SECRET, VERIFY_TOKEN, X_SECRET, TOKEN = "meta-secret", "verify-me", "x-consumer-secret", "api-token"
IG, XA = FakeDmPlatforms.INSTAGRAM_ACCOUNT, FakeDmPlatforms.X_ACCOUNT
DISCLOSURE = "Hi! Just so you know: Ava Climbs is an AI persona and these replies are written by AI."
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Channels:
    client: TestClient
    launcher: InProcessReplyLauncher
    platforms: FakeDmPlatforms
    store: ConversationStore

    def settle(self) -> dict[str, Any]:
        results = self.launcher.wait(timeout_s=120)
        failures = {k: v for k, v in results.items() if isinstance(v, Exception)}
        assert not failures, failures
        return results

    def sent_to(self, user: str) -> list[str]:
        return [s.text for s in self.platforms.sent if s.user_id == user]

    def conversation_of(self, user: str) -> dict[str, Any]:
        listed = self.client.get("/api/v1/dm/conversations", headers=AUTH).json()
        [conversation] = [c for c in listed if c["user_id"] == user]
        return self.client.get(f"/api/v1/dm/conversations/{conversation['id']}", headers=AUTH).json()


@pytest.fixture(scope="module")
def channels(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Channels]:
    data_dir = tmp_path_factory.mktemp("dm")
    with pytest.MonkeyPatch.context() as env, FakeDmPlatforms() as platforms:
        for name, value in {
            "DATA_DIR": str(data_dir),
            "TEXT_PROVIDERS": "offline",
            "API_TOKEN": TOKEN,
            "CHAT_ACCOUNTS": json.dumps({f"instagram:{IG}": "ava", f"x:{XA}": "ava"}),
            "INSTAGRAM_APP_SECRET": APP_SECRET,
            "INSTAGRAM_VERIFY_TOKEN": VERIFY_TOKEN,
            "INSTAGRAM_GRAPH_URL": platforms.url,
            "INSTAGRAM_USER_ID": IG,
            "INSTAGRAM_ACCESS_TOKEN": platforms.token,
            "X_API_URL": platforms.url,
            "X_ACCESS_TOKEN": platforms.token,
            "X_CONSUMER_SECRET": X_SECRET,
        }.items():
            env.setenv(f"CONTENTFORGE_{name}", value)
        get_settings.cache_clear()
        settings = get_settings()
        services = Services.from_settings(settings)
        services.repository.upsert_persona(
            Persona(
                id="ava",
                name="Ava Climbs",
                niche="fitness",
                appearance="athletic woman with short dark hair",
                personality_traits=["upbeat"],
                interests=["bouldering", "trail running"],
                tone="warm and direct",
                platforms=[Platform.instagram, Platform.x],
            )
        )
        app = create_app(settings)
        launcher = InProcessReplyLauncher(max_workers=4)
        app.state.dm_launcher = launcher
        with TestClient(app) as client:
            yield Channels(client, launcher, platforms, ConversationStore(services.sessions))
        launcher.close()
        every_first_reply_discloses(ConversationStore(services.sessions))
    get_settings.cache_clear()


def every_first_reply_discloses(store: ConversationStore) -> None:
    for conversation in store.conversations(limit=500):
        sent = [
            m
            for m in store.messages(conversation.id)
            if m.direction == "outbound" and m.source != "human" and m.status == "sent"
        ]
        if sent:
            assert sent[0].disclosure and sent[0].text.startswith(DISCLOSURE), sent[0].text
            assert conversation.disclosed


def instagram_delivery(user: str, mid: str, text: str, at_ms: int | None = None) -> bytes:
    at_ms = at_ms if at_ms is not None else int(time.time() * 1000)
    entry = {
        "id": IG,
        "time": at_ms,
        "messaging": [
            {
                "sender": {"id": user},
                "recipient": {"id": IG},
                "timestamp": at_ms,
                "message": {"mid": mid, "text": text},
            }
        ],
    }
    return json.dumps({"object": "instagram", "entry": [entry]}).encode()


def post_instagram(channels: Channels, body: bytes, secret: str = APP_SECRET) -> Any:
    signature = meta_signature(SecretStr(secret), body)
    return channels.client.post(
        "/api/v1/dm/webhooks/instagram",
        content=body,
        headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"},
    )


def test_instagram_subscription_handshake(channels: Channels) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    answer = channels.client.get("/api/v1/dm/webhooks/instagram", params=params)
    assert answer.status_code == 200 and answer.text == "1158201444"
    wrong = channels.client.get(
        "/api/v1/dm/webhooks/instagram", params={**params, "hub.verify_token": "guess"}
    )
    assert wrong.status_code == 403


def test_a_signed_instagram_message_gets_exactly_one_reply_even_when_redelivered(channels: Channels) -> None:
    body = instagram_delivery("ig-user-1", "mid.in.1", "hey Ava, love your climbing videos!")
    first = post_instagram(channels, body)
    assert first.status_code == 200 and first.json() == {"received": 1, "duplicates": 0, "unrouted": 0}
    channels.settle()
    again = post_instagram(channels, body)
    assert again.json() == {"received": 0, "duplicates": 1, "unrouted": 0}
    channels.settle()

    [reply] = channels.sent_to("ig-user-1")
    assert reply.startswith(DISCLOSURE) and "Ava Climbs" in reply and "bouldering" in reply
    conversation = channels.conversation_of("ig-user-1")
    assert conversation["disclosed"] and conversation["state"] == "auto"
    assert [m["direction"] for m in conversation["messages"]] == ["inbound", "outbound"]
    assert conversation["messages"][1]["disclosure"] is True


class UnreachablePrefect:
    """A launcher whose Prefect server cannot be reached, as ``DeploymentReplyLauncher`` reports it."""

    def __init__(self) -> None:
        self.tried: list[str] = []

    async def launch(self, message_id: str) -> str | None:
        self.tried.append(message_id)
        raise PrefectUnavailable("the Prefect API at http://127.0.0.1:9/api is unreachable")


def test_a_message_whose_reply_cannot_be_started_is_refused_so_the_platform_redelivers(
    channels: Channels,
) -> None:
    app = channels.client.app
    body = instagram_delivery("ig-user-noprefect", "mid.noprefect", "hi Ava, are you there?")
    unreachable = UnreachablePrefect()
    app.state.dm_launcher = unreachable  # type: ignore[attr-defined]
    try:
        refused = post_instagram(channels, body)
    finally:
        app.state.dm_launcher = channels.launcher  # type: ignore[attr-defined]
    # A 200 would make Meta drop the delivery and leave the stored message unanswered for good.
    assert refused.status_code == 503, refused.text
    assert "redeliver" in refused.json()["error"]["message"]
    [stored] = channels.conversation_of("ig-user-noprefect")["messages"]
    assert stored["status"] == "received" and len(unreachable.tried) == 1

    redelivered = post_instagram(channels, body)
    assert redelivered.status_code == 200
    assert redelivered.json() == {"received": 0, "duplicates": 1, "unrouted": 0}
    channels.settle()
    [reply] = channels.sent_to("ig-user-noprefect")
    assert reply.startswith(DISCLOSURE)


def test_a_non_ascii_signature_header_is_a_403_not_a_500(channels: Channels) -> None:
    body = instagram_delivery("ig-user-nonascii", "mid.nonascii", "hello")
    for path, header in (
        ("/api/v1/dm/webhooks/instagram", "X-Hub-Signature-256"),
        ("/api/v1/dm/webhooks/x", "x-twitter-webhooks-signature"),
    ):
        answer = channels.client.post(path, content=body, headers={header: "sha256=\u00e9".encode()})
        assert answer.status_code == 403, (path, answer.status_code, answer.text)
    listed = channels.client.get("/api/v1/dm/conversations", headers=AUTH).json()
    assert all(c["user_id"] != "ig-user-nonascii" for c in listed)


def test_a_bad_signature_is_refused_and_nothing_is_stored(channels: Channels) -> None:
    body = instagram_delivery("ig-user-forged", "mid.forged", "hello")
    forged = post_instagram(channels, body, secret="not-the-app-secret")
    unsigned = channels.client.post("/api/v1/dm/webhooks/instagram", content=body)
    tampered = channels.client.post(
        "/api/v1/dm/webhooks/instagram",
        content=body.replace(b"hello", b"hellO"),
        headers={"X-Hub-Signature-256": meta_signature(SecretStr(APP_SECRET), body)},
    )
    assert forged.status_code == unsigned.status_code == tampered.status_code == 403
    listed = channels.client.get("/api/v1/dm/conversations", headers=AUTH).json()
    assert all(c["user_id"] != "ig-user-forged" for c in listed)
    assert channels.sent_to("ig-user-forged") == []


def test_a_message_outside_the_24_hour_window_is_held_for_a_person(channels: Channels) -> None:
    old = int((time.time() - 25 * 3600) * 1000)
    post_instagram(channels, instagram_delivery("ig-user-late", "mid.late", "are you there?", at_ms=old))
    channels.settle()
    assert channels.sent_to("ig-user-late") == []
    conversation = channels.conversation_of("ig-user-late")
    assert [m["status"] for m in conversation["messages"]] == ["held"]
    assert not conversation["disclosed"]


def test_stop_through_the_webhook_ends_automation(channels: Channels) -> None:
    post_instagram(channels, instagram_delivery("ig-user-stop", "mid.s1", "hi!"))
    channels.settle()
    post_instagram(channels, instagram_delivery("ig-user-stop", "mid.s2", "Stop"))
    channels.settle()
    post_instagram(channels, instagram_delivery("ig-user-stop", "mid.s3", "hello??"))
    channels.settle()
    assert len(channels.sent_to("ig-user-stop")) == 1
    conversation = channels.conversation_of("ig-user-stop")
    assert conversation["opted_out"] and [m["status"] for m in conversation["messages"]][-2:] == [
        "ignored",
        "ignored",
    ]


def test_x_crc_check_and_a_signed_direct_message(channels: Channels) -> None:
    crc = channels.client.get("/api/v1/dm/webhooks/x", params={"crc_token": "challenge-123"})
    assert crc.json() == {"response_token": x_signature(SecretStr(X_SECRET), b"challenge-123")}

    event = {
        "type": "message_create",
        "id": "1800000000000000001",
        "created_timestamp": str(int(time.time() * 1000)),
        "message_create": {
            "target": {"recipient_id": XA},
            "sender_id": "777",
            "message_data": {"text": "hi Ava"},
        },
    }
    echo = {
        **event,
        "id": "1800000000000000002",
        "message_create": {**event["message_create"], "sender_id": XA},
    }
    body = json.dumps({"for_user_id": XA, "direct_message_events": [event, echo]}).encode()
    bad = channels.client.post(
        "/api/v1/dm/webhooks/x", content=body, headers={"x-twitter-webhooks-signature": "sha256=AAAA"}
    )
    assert bad.status_code == 403
    signature = x_signature(SecretStr(X_SECRET), body)
    good = channels.client.post(
        "/api/v1/dm/webhooks/x", content=body, headers={"x-twitter-webhooks-signature": signature}
    )
    assert good.json() == {"received": 1, "duplicates": 0, "unrouted": 0}  # the account's own echo skipped
    channels.settle()
    [reply] = channels.sent_to("777")
    assert reply.startswith(DISCLOSURE)


def test_the_dm_api_take_over_human_reply_and_hand_back(channels: Channels) -> None:
    def post(text: str, message_id: str) -> dict[str, Any]:
        answer = channels.client.post(
            "/api/v1/dm/messages",
            json={"persona_id": "ava", "user_id": "site-user-1", "text": text, "message_id": message_id},
            headers=AUTH,
        )
        assert answer.status_code == 202, answer.text
        return answer.json()

    accepted = post("hello from the website", "w1")
    assert accepted["reply_started"] and not accepted["duplicate"]
    channels.settle()
    conversation_id = accepted["conversation_id"]
    detail = channels.client.get(f"/api/v1/dm/conversations/{conversation_id}", headers=AUTH).json()
    assert detail["disclosed"] and detail["messages"][-1]["text"].startswith(DISCLOSURE)
    assert post("hello from the website", "w1")["duplicate"]

    early = channels.client.post(
        f"/api/v1/dm/conversations/{conversation_id}/replies", json={"text": "hi"}, headers=AUTH
    )
    assert early.status_code == 409  # take over first
    taken = channels.client.post(f"/api/v1/dm/conversations/{conversation_id}/takeover", headers=AUTH)
    assert taken.json()["state"] == "human"
    post("is anyone there?", "w2")
    channels.settle()
    human = channels.client.post(
        f"/api/v1/dm/conversations/{conversation_id}/replies",
        json={"text": "Hi, this is Sam from the team."},
        headers={**AUTH, "X-ContentForge-Reviewer": "Sam"},
    )
    assert human.status_code == 200 and human.json()["author"] == "Sam (api token)"
    assert (
        channels.client.post(f"/api/v1/dm/conversations/{conversation_id}/handback", headers=AUTH).json()[
            "state"
        ]
        == "auto"
    )
    post("thanks!", "w3")
    channels.settle()

    messages = channels.client.get(f"/api/v1/dm/conversations/{conversation_id}", headers=AUTH).json()[
        "messages"
    ]
    assert [(m["direction"], m["status"], m["source"]) for m in messages] == [
        ("inbound", "answered", None),
        ("outbound", "sent", "template"),
        ("inbound", "held", None),
        ("outbound", "sent", "human"),
        ("inbound", "answered", None),
        ("outbound", "sent", "template"),
    ]
    assert not messages[-1]["disclosure"]  # disclosed once per conversation
    assert channels.client.get(f"/api/v1/dm/conversations/{'0' * 32}", headers=AUTH).status_code == 404
    bad = channels.client.post(
        "/api/v1/dm/messages", json={"persona_id": "nobody", "user_id": "u", "text": "hi"}, headers=AUTH
    )
    assert bad.status_code == 422
    assert channels.client.get("/api/v1/dm/conversations").status_code == 401


def test_each_reply_held_a_slot_of_the_llm_limit(channels: Channels) -> None:
    post_instagram(channels, instagram_delivery("ig-user-slot", "mid.slot", "hi"))
    results = channels.settle()
    assert all(r["llm_slot"] for r in results.values() if r["action"] == "replied")


def test_the_conversations_page_is_a_shell_under_the_gallery_csp(channels: Channels) -> None:
    from contentforge_api.gallery import GALLERY_CSP, STATIC_DIR

    page = channels.client.get("/gallery/conversations")
    assert page.status_code == 200 and page.headers["content-security-policy"] == GALLERY_CSP
    assert "<script>" not in page.text and 'src="/gallery/chat/static/conversations.js"' in page.text
    assert "ig-user" not in page.text  # no data in the page: the script fetches it with the token
    script = channels.client.get("/gallery/chat/static/conversations.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert channels.client.get("/gallery/chat/static/../app.py").status_code == 404
    source = (STATIC_DIR / "conversations.js").read_text()
    assert "innerHTML" not in source and "textContent" in source and "sessionStorage" in source


def test_a_rate_limited_reply_is_sent_once_by_the_resend_replies_flow(channels: Channels) -> None:
    from flows.resend_replies import resend_replies

    channels.platforms.fail_next(
        429, {"error": {"message": "(#4) Application request limit reached", "code": 4}}, {"Retry-After": "1"}
    )
    post_instagram(channels, instagram_delivery("ig-user-429", "mid.in.429", "hi Ava!"))
    [deferred] = [r for r in channels.settle().values() if r["action"] == "deferred"]
    assert deferred["action"] == "deferred" and channels.sent_to("ig-user-429") == []
    time.sleep(1.5)  # the platform's Retry-After

    outcomes = resend_replies(limit=10)
    assert [(o["action"], o["message_id"]) for o in outcomes] == [("replied", deferred["message_id"])]
    [reply] = channels.sent_to("ig-user-429")
    assert reply.startswith(DISCLOSURE)
    assert resend_replies(limit=10) == []
