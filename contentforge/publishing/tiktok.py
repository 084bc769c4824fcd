"""TikTok Content Posting API: direct photo posts pulled from a public URL.

1. ``POST /v2/post/publish/creator_info/query/`` → the creator's ``privacy_level_options``; the
   configured privacy level must be one of them (checked before posting).
2. ``POST /v2/post/publish/content/init/`` with ``media_type=PHOTO``, ``post_mode=DIRECT_POST``,
   ``source_info={source: PULL_FROM_URL, photo_images: [url], photo_cover_index: 0}`` and
   ``post_info`` (title, description, privacy_level, ``is_aigc``) → ``publish_id``. This is
   ``prepare``; the ledger stores the publish id, and a rerun only polls it, never re-inits.
3. ``POST /v2/post/publish/status/fetch/`` until ``PUBLISH_COMPLETE`` (or ``FAILED``).

Unaudited API clients may only post ``SELF_ONLY`` (private) content; TikTok answers
``unaudited_client_can_only_post_to_private_accounts``, which becomes a ``PermanentFailure``
that says what to change. TikTok photo posts take JPEG/WEBP, so the image goes as a JPEG variant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr

from contentforge.errors import InvalidInput
from contentforge.publishing.http import ApiClient, retry_after_seconds
from contentforge.publishing.media import MediaResolver
from contentforge.publishing.protocol import (
    PermanentFailure,
    Publication,
    PublishedPost,
    QuotaExhausted,
    RateLimited,
    TransientError,
)

DEFAULT_TIKTOK_URL = "https://open.tiktokapis.com"
PRIVACY_LEVELS = ("PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY")
TITLE_MAX = 90
DESCRIPTION_MAX = 4000
UNAUDITED = "unaudited_client_can_only_post_to_private_accounts"
IN_PROGRESS = frozenset({"PROCESSING_DOWNLOAD", "PROCESSING_UPLOAD", "SEND_TO_USER_INBOX"})


class TikTokPublisher:
    name = "tiktok"
    prepare_posts = True
    """``content/init`` with ``DIRECT_POST`` already posts: an init whose publish id was lost is
    never repeated (``publish_claimed`` fails the row and says to check the account)."""
    publish_is_idempotent = True
    """``publish`` only polls the publish id's status; it never posts."""

    def __init__(
        self,
        *,
        access_token: SecretStr,
        media: MediaResolver,
        base_url: str = DEFAULT_TIKTOK_URL,
        privacy_level: str = "PUBLIC_TO_EVERYONE",
        is_aigc: bool = True,
        poll_interval_s: float = 3.0,
        poll_max: int = 10,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not access_token.get_secret_value():
            raise InvalidInput("CONTENTFORGE_TIKTOK_ACCESS_TOKEN is required for the TikTok publisher")
        if privacy_level not in PRIVACY_LEVELS:
            raise InvalidInput(f"CONTENTFORGE_TIKTOK_PRIVACY_LEVEL must be one of {PRIVACY_LEVELS}")
        self.media = media
        self.privacy_level = privacy_level
        self.is_aigc = is_aigc
        self.poll_interval_s = poll_interval_s
        self.poll_max = poll_max
        self.sleep = sleep
        self.api = ApiClient(base_url, access_token, service="tiktok", client=client)

    def _call(self, path: str, payload: dict[str, Any], what: str) -> dict[str, Any]:
        response = self.api.request(
            "POST", path, json=payload, headers={"Content-Type": "application/json; charset=UTF-8"}
        )
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        error = body.get("error") or {}
        code = str(error.get("code") or ("ok" if response.is_success else "unknown"))
        if response.is_success and code == "ok":
            return body.get("data") or {}
        message = f"tiktok: {what} failed (HTTP {response.status_code}, {code}): {error.get('message') or ''}"
        message = message.strip()[:400]
        if code == UNAUDITED:
            raise PermanentFailure(
                f"{message} — this TikTok app is unaudited and may only post privately: set "
                "CONTENTFORGE_TIKTOK_PRIVACY_LEVEL=SELF_ONLY, or get the app audited by TikTok"
            )
        if code == "spam_risk_too_many_posts":
            raise QuotaExhausted.after(message, 6 * 3600)
        if code == "rate_limit_exceeded" or response.status_code == 429:
            raise RateLimited.after(message, retry_after_seconds(response, default=60.0))
        if response.status_code >= 500 or code == "internal_error":
            raise TransientError(message)
        raise PermanentFailure(message)

    def creator_info(self) -> dict[str, Any]:
        return self._call("/v2/post/publish/creator_info/query/", {}, "creator_info query")

    def prepare(self, publication: Publication) -> str | None:
        image_url = self.media.public_rendition_url(publication)
        info = self.creator_info()
        options = list(info.get("privacy_level_options") or [])
        if self.privacy_level not in options:
            hint = (
                " (only SELF_ONLY is offered: unaudited apps post privately until TikTok audits them)"
                if options == ["SELF_ONLY"]
                else ""
            )
            raise PermanentFailure(
                f"tiktok: privacy level {self.privacy_level} is not allowed for creator "
                f"{info.get('creator_username', '?')}; allowed: {options}{hint}; "
                "set CONTENTFORGE_TIKTOK_PRIVACY_LEVEL to one of them"
            )
        first_line = next((line for line in publication.caption.splitlines() if line.strip()), "")
        post_info: dict[str, Any] = {
            "title": first_line[:TITLE_MAX],
            "description": publication.caption[:DESCRIPTION_MAX],
            "privacy_level": self.privacy_level,
            "disable_comment": bool(info.get("comment_disabled", False)),
            "auto_add_music": True,
            "is_aigc": self.is_aigc,
        }
        data = self._call(
            "/v2/post/publish/content/init/",
            {
                "media_type": "PHOTO",
                "post_mode": "DIRECT_POST",
                "post_info": post_info,
                "source_info": {
                    "source": "PULL_FROM_URL",
                    "photo_cover_index": 0,
                    "photo_images": [image_url],
                },
            },
            "photo post init",
        )
        publish_id = data.get("publish_id")
        if not publish_id:
            raise TransientError(f"tiktok: init answer has no publish_id: {str(data)[:200]}")
        return str(publish_id)

    def publish(self, publication: Publication, container_id: str | None) -> PublishedPost:
        if not container_id:
            raise PermanentFailure("tiktok: publish needs the publish_id from prepare")
        delay = self.poll_interval_s
        status = ""
        for attempt in range(self.poll_max):
            data = self._call("/v2/post/publish/status/fetch/", {"publish_id": container_id}, "status fetch")
            status = str(data.get("status") or "")
            if status == "PUBLISH_COMPLETE":
                ids = data.get("publicaly_available_post_id") or data.get("publicly_available_post_id") or []
                post_id = str(ids[0]) if ids else None
                url = None
                if post_id:
                    username = self.creator_info().get("creator_username")
                    url = f"https://www.tiktok.com/@{username}/photo/{post_id}" if username else None
                return PublishedPost(
                    post_id, url, {"publish_id": container_id, "privacy": self.privacy_level}
                )
            if status == "FAILED":
                raise PermanentFailure(f"tiktok: post {container_id} FAILED: {data.get('fail_reason', '?')}")
            if status and status not in IN_PROGRESS:
                raise PermanentFailure(f"tiktok: post {container_id} has unexpected status {status}")
            if attempt + 1 < self.poll_max:
                self.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise TransientError(
            f"tiktok: post {container_id} still {status or 'unknown'} after {self.poll_max} checks"
        )
