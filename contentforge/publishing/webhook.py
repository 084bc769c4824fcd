"""Webhook publisher and notifier: signed JSON POSTs to an endpoint you run.

Every request carries

* ``X-ContentForge-Timestamp``: Unix seconds when it was signed;
* ``X-ContentForge-Signature``: ``sha256=`` + hex HMAC-SHA256 of ``"{timestamp}.{body}"`` with the
  shared secret (``CONTENTFORGE_WEBHOOK_SECRET``), so a receiver can reject forged or replayed calls;
* ``Idempotency-Key``: the publication's key, so a receiver can drop a repeated delivery.

The publisher posts ``{"event": "publication.publish", ...}`` and takes the post id and URL from
the JSON answer (``id``/``url``; both optional). The notifier posts ``publication.published`` or
``publication.failed`` events after the fact.

Both send only to public addresses (``contentforge.outbound``): a webhook URL naming or resolving to
a loopback, private or link-local address (169.254.169.254) is refused with one line naming the
setting, unless ``CONTENTFORGE_ALLOW_PRIVATE_URLS`` lists ``webhook_url`` / ``webhook_notify_url``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
from pydantic import SecretStr

from contentforge.errors import InvalidInput
from contentforge.outbound import OutboundPolicy
from contentforge.publishing.http import DEFAULT_TIMEOUT, ApiClient
from contentforge.publishing.protocol import Publication, PublishedPost

SIGNATURE_HEADER = "X-ContentForge-Signature"
TIMESTAMP_HEADER = "X-ContentForge-Timestamp"


def sign(secret: SecretStr, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.get_secret_value().encode(), message, hashlib.sha256).hexdigest()


def verify(secret: SecretStr, timestamp: str, body: bytes, signature: str, *, tolerance_s: int = 300) -> bool:
    """What a receiver does: constant-time signature check plus a replay window."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


def publication_payload(publication: Publication) -> dict[str, Any]:
    return {
        "idempotency_key": publication.idempotency_key,
        "publication_id": publication.id,
        "piece_id": publication.piece_id,
        "persona_id": publication.persona_id,
        "platform": publication.platform,
        "caption": publication.caption,
        "alt_text": publication.alt_text,
        "media_url": publication.media_url,
        "scheduled_for": publication.scheduled_for.isoformat() if publication.scheduled_for else None,
    }


class _SignedPoster:
    """Signs and POSTs; without an injected ``client`` every request (and any redirect hop) goes
    through ``policy``: the host resolved once, every address public (unless opted in), the
    connection pinned to a checked address."""

    def __init__(
        self, url: str, secret: SecretStr, client: httpx.Client | None, policy: OutboundPolicy
    ) -> None:
        policy.check_static(url)
        if not secret.get_secret_value():
            raise InvalidInput("CONTENTFORGE_WEBHOOK_SECRET is empty; webhooks are always signed")
        self.url = url
        self.secret = secret
        self.api = ApiClient(
            url, None, service="webhook", client=client or policy.client(timeout=DEFAULT_TIMEOUT)
        )

    def post(self, payload: dict[str, Any], idempotency_key: str, what: str) -> dict[str, Any]:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            "Idempotency-Key": idempotency_key,
        }
        response = self.api.request("POST", self.url, content=body, headers=headers)
        self.api.raise_for_status(response, what)
        if not response.content:
            return {}
        try:
            answer = response.json()
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}


class WebhookPublisher:
    """Publishes by handing the post to your endpoint (e.g. a Zapier/Make hook or your own service)."""

    name = "webhook"
    publish_is_idempotent = True
    """A repeated delivery carries the same ``Idempotency-Key``; the receiver contract is to drop it
    (a receiver that does not may see one publication twice after a lost answer)."""

    def __init__(
        self,
        url: str,
        secret: SecretStr,
        client: httpx.Client | None = None,
        *,
        policy: OutboundPolicy | None = None,
    ) -> None:
        """``policy`` default: ``CONTENTFORGE_WEBHOOK_URL``'s under the process settings."""
        self._poster = _SignedPoster(url, secret, client, policy or OutboundPolicy.for_setting("webhook_url"))

    def prepare(self, publication: Publication) -> str | None:
        return None

    def publish(self, publication: Publication, container_id: str | None) -> PublishedPost:
        payload = {"event": "publication.publish", **publication_payload(publication)}
        answer = self._poster.post(payload, publication.idempotency_key, "publish webhook")
        post_id = answer.get("id")
        return PublishedPost(
            str(post_id) if post_id is not None else publication.idempotency_key,
            answer.get("url") if isinstance(answer.get("url"), str) else None,
        )


class WebhookNotifier:
    """Tells an endpoint that a publication was published or failed."""

    def __init__(
        self,
        url: str,
        secret: SecretStr,
        client: httpx.Client | None = None,
        *,
        policy: OutboundPolicy | None = None,
    ) -> None:
        """``policy`` default: ``CONTENTFORGE_WEBHOOK_NOTIFY_URL``'s under the process settings."""
        self._poster = _SignedPoster(
            url, secret, client, policy or OutboundPolicy.for_setting("webhook_notify_url")
        )

    def notify(self, event: str, publication: Publication, **fields: Any) -> None:
        payload = {"event": f"publication.{event}", **publication_payload(publication), **fields}
        self._poster.post(payload, f"{publication.idempotency_key}:{event}", f"{event} notification")

    def notify_event(self, event: str, key: str, **fields: Any) -> None:
        """Another event than a publication's (``analytics.reach_drop``), signed the same way."""
        self._poster.post({"event": event, **fields}, f"{event}:{key}", f"{event} notification")
