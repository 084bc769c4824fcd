"""X API v2: upload the image, then create the post.

1. The caption is measured as X counts it (weighted: URLs 23, emoji and CJK 2) before any call;
   too long is a ``PermanentFailure`` that costs no request.
2. ``POST /2/media/upload`` (JSON: base64 ``media``, ``media_category=tweet_image``,
   ``media_type``) → ``data.id``. This is ``prepare``; the ledger stores the media id before step 3.
   Alt text goes to ``POST /2/media/metadata``.
3. ``POST /2/tweets`` with ``text`` and ``media.media_ids`` → ``data.id``.

A 429 answer becomes ``RateLimited`` until ``x-rate-limit-reset``. Auth is an OAuth 2.0 user
access token (scopes ``tweet.write``, ``media.write``) sent as a bearer header.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
from pydantic import SecretStr

from contentforge.errors import InvalidInput
from contentforge.publishing.http import ApiClient
from contentforge.publishing.media import MediaResolver
from contentforge.publishing.protocol import (
    PermanentFailure,
    Publication,
    PublishedPost,
    TransientError,
)
from contentforge.text.platform_rules import rules_for

DEFAULT_X_URL = "https://api.x.com"


def media_type_of(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise PermanentFailure("x: the image is not PNG, JPEG or WEBP")


class XPublisher:
    name = "x"
    publish_is_idempotent = False
    """X offers no lookup of a post by our key: a ``POST /2/tweets`` whose answer was lost (timeout,
    crash, outcome not recorded) may have posted, so it is never sent again (the row fails)."""

    def __init__(
        self,
        *,
        access_token: SecretStr,
        media: MediaResolver,
        base_url: str = DEFAULT_X_URL,
        client: httpx.Client | None = None,
    ) -> None:
        if not access_token.get_secret_value():
            raise InvalidInput("CONTENTFORGE_X_ACCESS_TOKEN is required for the X publisher")
        self.media = media
        self.api = ApiClient(base_url, access_token, service="x", client=client)
        self.rules = rules_for("x")

    def check_caption(self, publication: Publication) -> None:
        length = self.rules.measure(publication.caption)
        if length > self.rules.max_chars:
            raise PermanentFailure(
                f"x: caption of piece {publication.piece_id} is {length} weighted chars, "
                f"X allows {self.rules.max_chars}; shorten the hook"
            )

    def _post(self, path: str, payload: dict[str, Any], what: str) -> dict[str, Any]:
        response = self.api.request("POST", path, json=payload)
        if response.status_code == 403 and "duplicate" in response.text.lower():
            raise PermanentFailure(
                f"x: {what} refused as duplicate content; an earlier attempt may already have posted it"
            )
        self.api.raise_for_status(response, what)
        return self.api.json(response, what)

    def prepare(self, publication: Publication) -> str | None:
        self.check_caption(publication)
        data = self.media.load_bytes(publication)
        body = self._post(
            "/2/media/upload",
            {
                "media": base64.b64encode(data).decode("ascii"),
                "media_category": "tweet_image",
                "media_type": media_type_of(data),
            },
            "media upload",
        )
        media_id = (body.get("data") or {}).get("id")
        if not media_id:
            raise TransientError(f"x: media upload answer has no data.id: {str(body)[:200]}")
        if publication.alt_text:
            self._post(
                "/2/media/metadata",
                {"id": str(media_id), "metadata": {"alt_text": {"text": publication.alt_text[:1000]}}},
                "media metadata",
            )
        return str(media_id)

    def publish(self, publication: Publication, container_id: str | None) -> PublishedPost:
        self.check_caption(publication)
        payload: dict[str, Any] = {"text": publication.caption}
        if container_id:
            payload["media"] = {"media_ids": [container_id]}
        body = self._post("/2/tweets", payload, "create post")
        post_id = (body.get("data") or {}).get("id")
        if not post_id:
            raise TransientError(f"x: create post answer has no data.id: {str(body)[:200]}")
        return PublishedPost(
            str(post_id), f"https://x.com/i/web/status/{post_id}", {"media_id": container_id}
        )
