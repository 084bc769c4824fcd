"""The platforms' webhook contracts: handshakes, signatures and the messages inside a delivery.

Instagram (Meta Webhooks, Messaging):

* ``GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C`` must answer ``C`` when ``T`` is the
  verify token typed in the app's webhook setup;
* every ``POST`` carries ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed with
  the app secret>``; a delivery is ``{"object": "instagram", "entry": [{"id": <account>, "messaging":
  [{"sender": {"id"}, "recipient": {"id"}, "timestamp": <ms>, "message": {"mid", "text"}}]}]}``.
  Echoes (``message.is_echo``: what the account itself sent) and non-text events are skipped.

X (Account Activity API):

* the CRC check ``GET ?crc_token=C`` must answer ``{"response_token": "sha256=<base64 HMAC-SHA256 of
  C keyed with the consumer secret>"}``;
* every ``POST`` carries ``x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256 of the raw body>``;
  a delivery is ``{"for_user_id": <account>, "direct_message_events": [{"type": "message_create",
  "id", "created_timestamp": <ms>, "message_create": {"sender_id", "target": {"recipient_id"},
  "message_data": {"text"}}}]}``. Messages the account sent itself are skipped.

Signatures are compared in constant time over the exact bytes received.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

META_SIGNATURE_HEADER = "X-Hub-Signature-256"
X_SIGNATURE_HEADER = "x-twitter-webhooks-signature"


@dataclass(frozen=True)
class InboundEvent:
    """One text message a user sent to an account ContentForge answers for."""

    platform: str
    account_id: str
    user_id: str
    message_id: str
    text: str
    sent_at: datetime


def _hmac(secret: SecretStr, data: bytes) -> bytes:
    return hmac.new(secret.get_secret_value().encode(), data, hashlib.sha256).digest()


def meta_signature(secret: SecretStr, body: bytes) -> str:
    return "sha256=" + _hmac(secret, body).hex()


def verify_meta_signature(secret: SecretStr | None, body: bytes, header: str | None) -> bool:
    if secret is None or not secret.get_secret_value() or not header:
        return False
    # Bytes, not str: compare_digest raises TypeError on a non-ASCII str, which would be a 500.
    return hmac.compare_digest(meta_signature(secret, body).encode(), header.strip().encode())


def x_signature(secret: SecretStr, data: bytes) -> str:
    return "sha256=" + base64.b64encode(_hmac(secret, data)).decode()


def x_crc_response(secret: SecretStr, crc_token: str) -> dict[str, str]:
    return {"response_token": x_signature(secret, crc_token.encode())}


def verify_x_signature(secret: SecretStr | None, body: bytes, header: str | None) -> bool:
    if secret is None or not secret.get_secret_value() or not header:
        return False
    return hmac.compare_digest(x_signature(secret, body).encode(), header.strip().encode())


def _from_ms(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def instagram_events(payload: Any) -> list[InboundEvent]:
    """The user text messages in an Instagram delivery (echoes, reactions, reads skipped)."""
    events: list[InboundEvent] = []
    if not isinstance(payload, dict) or payload.get("object") != "instagram":
        return events
    for entry in payload.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        for item in entry.get("messaging") or []:
            message = item.get("message") if isinstance(item, dict) else None
            if not isinstance(message, dict) or message.get("is_echo"):
                continue
            text, mid = message.get("text"), message.get("mid")
            sender = (item.get("sender") or {}).get("id")
            recipient = (item.get("recipient") or {}).get("id") or entry.get("id")
            if not (isinstance(text, str) and text.strip() and mid and sender and recipient):
                continue
            events.append(
                InboundEvent(
                    "instagram", str(recipient), str(sender), str(mid), text, _from_ms(item.get("timestamp"))
                )
            )
    return events


def x_events(payload: Any) -> list[InboundEvent]:
    """The direct messages users sent to ``for_user_id`` in an X delivery."""
    events: list[InboundEvent] = []
    if not isinstance(payload, dict):
        return events
    account = str(payload.get("for_user_id") or "")
    for event in payload.get("direct_message_events") or []:
        if not isinstance(event, dict) or event.get("type") != "message_create":
            continue
        create = event.get("message_create") or {}
        sender = str(create.get("sender_id") or "")
        text = (create.get("message_data") or {}).get("text")
        recipient = str((create.get("target") or {}).get("recipient_id") or account)
        if not (
            account
            and sender
            and sender != account
            and isinstance(text, str)
            and text.strip()
            and event.get("id")
        ):
            continue
        events.append(
            InboundEvent(
                "x", recipient, sender, str(event["id"]), text, _from_ms(event.get("created_timestamp"))
            )
        )
    return events
