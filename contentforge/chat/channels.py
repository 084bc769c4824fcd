"""Sending a direct message: Instagram's Send API, the X DM API, and ContentForge's own API.

* Instagram (Messaging API): ``POST {instagram_graph_url}/{instagram_user_id}/messages`` with
  ``{"recipient": {"id": <IGSID>}, "message": {"text": ...}}`` and the account's token as a bearer
  header; the answer carries ``message_id``. A standard message is allowed only within 24 hours of
  the user's last message (the engine checks before sending; Meta refuses late ones too).
* X: ``POST {x_api_url}/2/dm_conversations/with/{participant_id}/messages`` with ``{"text": ...}``
  and an OAuth 2.0 user token (``dm.write``); the answer's ``data.dm_event_id`` is the message id.
* API: nothing to send; the reply is stored and the embedding site reads it from
  ``GET /api/v1/dm/conversations/{id}``.

HTTP errors are the publishers' (``contentforge.publishing.http``): 429 ``RateLimited``, 5xx and
transport errors ``TransientError``, other 4xx ``PermanentFailure``, response excerpts scrubbed of the
token. Every request goes through the outbound URL policy of its setting.
"""

from __future__ import annotations

from typing import Protocol

import httpx
from pydantic import SecretStr

from contentforge.config import Settings
from contentforge.errors import InvalidInput
from contentforge.outbound import OutboundPolicy
from contentforge.publishing.http import DEFAULT_TIMEOUT, ApiClient
from contentforge.publishing.protocol import TransientError

INSTAGRAM_WINDOW_HOURS = 24


class Channel(Protocol):
    name: str

    def send(self, user_id: str, text: str) -> str | None:
        """Deliver ``text`` to ``user_id``; the platform's message id (None where there is none)."""
        ...


class InstagramSendApi:
    name = "instagram"

    def __init__(self, *, base_url: str, account_id: str, token: SecretStr, client: httpx.Client) -> None:
        self.account_id = account_id
        self.api = ApiClient(base_url, token, service="instagram", client=client)

    def send(self, user_id: str, text: str) -> str | None:
        response = self.api.request(
            "POST",
            f"/{self.account_id}/messages",
            json={"recipient": {"id": user_id}, "message": {"text": text}},
        )
        self.api.raise_for_status(response, "send message")
        body = self.api.json(response, "send message")
        if not isinstance(body.get("message_id"), str):
            raise TransientError(
                f"instagram: send message answered without a message_id: {self.api.excerpt(response)}"
            )
        return str(body["message_id"])


class XDirectMessages:
    name = "x"

    def __init__(self, *, base_url: str, token: SecretStr, client: httpx.Client) -> None:
        self.api = ApiClient(base_url, token, service="x", client=client)

    def send(self, user_id: str, text: str) -> str | None:
        response = self.api.request(
            "POST", f"/2/dm_conversations/with/{user_id}/messages", json={"text": text}
        )
        self.api.raise_for_status(response, "send direct message")
        data = self.api.json(response, "send direct message").get("data")
        if not isinstance(data, dict) or not isinstance(data.get("dm_event_id"), str):
            raise TransientError(
                f"x: send direct message answered without dm_event_id: {self.api.excerpt(response)}"
            )
        return str(data["dm_event_id"])


class ApiChannel:
    """ContentForge's own DM API: the reply is stored; the embedding site polls for it."""

    name = "api"

    def send(self, user_id: str, text: str) -> str | None:
        return None


def build_channel(platform: str, settings: Settings, client: httpx.Client | None = None) -> Channel:
    """The sender for ``platform``; a missing token is one line naming the setting."""
    if platform == "api":
        return ApiChannel()
    if platform == "instagram":
        token, account = settings.instagram_access_token, settings.instagram_user_id
        if token is None or not token.get_secret_value() or not account:
            raise InvalidInput(
                "Instagram replies need CONTENTFORGE_INSTAGRAM_ACCESS_TOKEN and "
                "CONTENTFORGE_INSTAGRAM_USER_ID"
            )
        policy = OutboundPolicy.for_setting("instagram_graph_url", settings)
        policy.check_static(settings.instagram_graph_url)
        return InstagramSendApi(
            base_url=settings.instagram_graph_url,
            account_id=account,
            token=token,
            client=client or policy.client(timeout=DEFAULT_TIMEOUT),
        )
    if platform == "x":
        token = settings.x_access_token
        if token is None or not token.get_secret_value():
            raise InvalidInput(
                "X replies need CONTENTFORGE_X_ACCESS_TOKEN (an OAuth 2.0 user token with dm.write)"
            )
        policy = OutboundPolicy.for_setting("x_api_url", settings)
        policy.check_static(settings.x_api_url)
        return XDirectMessages(
            base_url=settings.x_api_url, token=token, client=client or policy.client(timeout=DEFAULT_TIMEOUT)
        )
    raise InvalidInput(f"no direct-message channel for platform {platform!r}")
