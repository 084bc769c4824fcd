"""The conversation notifier's Idempotency-Key: a retried event for one message can be deduplicated."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import SecretStr
from support.chat_fakes import NotifyEndpoint

from contentforge.chat import notify
from contentforge.chat.notify import WebhookConversationNotifier
from contentforge.config import Settings
from contentforge.db.chat import Conversation

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONVERSATION = Conversation(
    id="conv-1", persona_id="ava", platform="instagram", user_id="u1", thread_id=None, state="human",
    state_reason="asked for a human", opted_out=False, disclosed=True, disclosed_at=NOW,
    last_inbound_at=NOW, created_at=NOW, updated_at=NOW,
)  # fmt: skip


def test_a_retried_notification_keeps_its_idempotency_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seconds = itertools.count(1_790_000_000, 7)  # every notification is sent at a later second
    monkeypatch.setattr(notify, "time", SimpleNamespace(time=lambda: next(seconds)))
    with NotifyEndpoint() as endpoint:
        settings = Settings(
            data_dir=tmp_path,
            webhook_notify_url=endpoint.url,
            webhook_secret=SecretStr("notify-secret"),
            allow_private_urls="*",
        )
        notifier = WebhookConversationNotifier(settings)
        for event, message_id in [("handoff", "m1"), ("handoff", "m1"), ("queued", "m1"), ("handoff", "m2")]:
            assert notifier.notify(event, CONVERSATION, "asked for a human", message_id=message_id)

    keys = [headers["idempotency-key"] for headers, _ in endpoint.received]
    timestamps = {headers["x-contentforge-timestamp"] for headers, _ in endpoint.received}
    assert len(timestamps) == 4  # the retry really was sent at another time
    assert keys[0] == keys[1] == "conv-1:handoff:m1"  # the retry: same conversation, event and message
    assert len(set(keys)) == 3  # another event or another message is a new notification
    assert [body["event"] for _, body in endpoint.received][-1] == "conversation.handoff"
