"""Telling a person that a conversation needs them: the signed notify webhook.

The same endpoint, secret and signature as the publishing notifier (``contentforge.publishing.
webhook``: ``X-ContentForge-Signature`` over ``"{timestamp}.{body}"``), with events
``conversation.handoff`` and ``conversation.queued``. The payload names the conversation, why it needs a
person and whether the AI disclosure was sent; never the user's words (they stay in the database,
read through the API or the CLI). Without ``CONTENTFORGE_WEBHOOK_NOTIFY_URL`` the conversation still
shows as ``human`` in ``contentforge chat list`` and the gallery; the log says nobody was notified.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

import httpx

from contentforge.config import Settings
from contentforge.db.chat import Conversation
from contentforge.outbound import OutboundPolicy
from contentforge.publishing.http import DEFAULT_TIMEOUT, ApiClient
from contentforge.publishing.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

log = logging.getLogger(__name__)


class Notifier(Protocol):
    def notify(self, event: str, conversation: Conversation, reason: str, *, message_id: str) -> bool:
        """``message_id``: the inbound message the event is about; with the conversation and the
        event it is the Idempotency-Key, so a retried notification can be told from a new one."""
        ...


def conversation_payload(event: str, conversation: Conversation, reason: str) -> dict[str, Any]:
    return {
        "event": f"conversation.{event}",
        "conversation_id": conversation.id,
        "persona_id": conversation.persona_id,
        "platform": conversation.platform,
        "state": conversation.state,
        "reason": reason,
        "disclosed": conversation.disclosed,
    }


class WebhookConversationNotifier:
    def __init__(self, settings: Settings, client: httpx.Client | None = None) -> None:
        self.url = settings.webhook_notify_url
        self.secret = settings.webhook_secret
        self._client = client
        self._settings = settings

    def notify(self, event: str, conversation: Conversation, reason: str, *, message_id: str) -> bool:
        """True when the endpoint took the event; False (logged) when none is set or it failed."""
        if not self.url or self.secret is None or not self.secret.get_secret_value():
            log.warning(
                "conversation %s needs a person (%s); nobody notified: set CONTENTFORGE_WEBHOOK_NOTIFY_URL "
                "and CONTENTFORGE_WEBHOOK_SECRET",
                conversation.id,
                reason,
            )
            return False
        body = json.dumps(conversation_payload(event, conversation, reason), sort_keys=True).encode()
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign(self.secret, stamp, body),
            # No timestamp in the key: a retry of the same event for the same message must match.
            "Idempotency-Key": f"{conversation.id}:{event}:{message_id}",
        }
        policy = OutboundPolicy.for_setting("webhook_notify_url", self._settings)
        client = self._client or policy.client(timeout=DEFAULT_TIMEOUT)
        api = ApiClient(self.url, None, service="notify webhook", client=client)
        try:
            response = api.request("POST", self.url, content=body, headers=headers)
            api.raise_for_status(response, f"{event} notification")
        except Exception as exc:  # a notification failure must not lose the hand-off itself
            log.warning("conversation %s: %s notification failed: %s", conversation.id, event, exc)
            return False
        finally:
            if self._client is None:
                client.close()
        return True
