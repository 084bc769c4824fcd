"""Instagram Graph API content publishing (single image posts).

The documented flow, per publication:

1. ``GET /{ig-user-id}/content_publishing_limit?fields=quota_usage,config``: the account may
   publish ``config.quota_total`` posts (50) per rolling 24 h; when used up the publication waits
   (``QuotaExhausted``) instead of failing.
2. ``POST /{ig-user-id}/media`` with ``image_url`` (a public JPEG), ``caption`` and ``alt_text``
   → a container id. This is ``prepare``; the ledger stores the id before step 3.
3. ``GET /{container-id}?fields=status_code,status`` until ``FINISHED`` (bounded polling with
   exponential backoff); ``ERROR`` and ``EXPIRED`` fail the publication, ``PUBLISHED`` means an
   earlier run already posted it, so nothing is published twice. A container does not name the
   media it became, so the media id is then looked up in ``GET /{ig-user-id}/media``: the one post
   with this caption published after the container was created (none or several: recorded as
   unknown, with a note saying so).
4. ``POST /{ig-user-id}/media_publish`` with ``creation_id`` → the media id; its ``permalink``
   is read when available.

A rate limit (HTTP 429 or a "too many calls" code) waits for ``Retry-After`` when the answer has
one, else for the Business Use Case header's ``estimated_time_to_regain_access``, else for
``quota_retry_s``.

The token is sent as a bearer header, never in a URL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from contentforge import retry_after
from contentforge.errors import InvalidInput
from contentforge.publishing.http import ApiClient
from contentforge.publishing.media import MediaResolver
from contentforge.publishing.protocol import (
    PermanentFailure,
    Publication,
    PublishedPost,
    QuotaExhausted,
    RateLimited,
    TransientError,
)

DEFAULT_GRAPH_URL = "https://graph.facebook.com/v21.0"
DEFAULT_QUOTA_TOTAL = 50
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80002})
"""Graph API error codes meaning "too many calls" (app, user, page, custom, Instagram)."""
TRANSIENT_CODES = frozenset({1, 2})
QUOTA_SUBCODE = 2207042
"""Error subcode for "the account reached its content publishing limit"."""
MEDIA_LOOKUP_LIMIT = 50
"""Newest posts searched for the media a ``PUBLISHED`` container became."""
CLOCK_SKEW = timedelta(minutes=5)


def regain_access_s(response: httpx.Response) -> float | None:
    """``estimated_time_to_regain_access`` (minutes) of the usage headers, in seconds; None if absent."""
    waits: list[float] = []
    for name in ("x-business-use-case-usage", "x-app-usage"):
        try:
            usage = json.loads(response.headers.get(name) or "null")
        except ValueError:
            continue
        entries = [e for v in usage.values() for e in v] if isinstance(usage, dict) else []
        for entry in entries:
            minutes = entry.get("estimated_time_to_regain_access") if isinstance(entry, dict) else None
            if isinstance(minutes, int | float) and minutes > 0:
                waits.append(float(minutes) * 60)
    return max(waits) if waits else None


def _timestamp(value: object) -> datetime | None:
    """A Graph API timestamp (``2026-03-02T08:01:00+0000``)."""
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None


class InstagramPublisher:
    name = "instagram"
    publish_is_idempotent = True
    """``publish`` reads the container's status first: ``PUBLISHED`` (an earlier call went through)
    is recorded, not posted again."""

    def __init__(
        self,
        *,
        user_id: str,
        access_token: SecretStr,
        media: MediaResolver,
        base_url: str = DEFAULT_GRAPH_URL,
        ai_disclosure_param: str | None = None,
        quota_retry_s: float = 3600.0,
        poll_interval_s: float = 2.0,
        poll_max: int = 10,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not user_id:
            raise InvalidInput("CONTENTFORGE_INSTAGRAM_USER_ID is required for the Instagram publisher")
        if not access_token.get_secret_value():
            raise InvalidInput("CONTENTFORGE_INSTAGRAM_ACCESS_TOKEN is required for the Instagram publisher")
        self.user_id = user_id
        self.media = media
        self.ai_disclosure_param = ai_disclosure_param
        self.quota_retry_s = quota_retry_s
        self.poll_interval_s = poll_interval_s
        self.poll_max = poll_max
        self.sleep = sleep
        self.api = ApiClient(base_url, access_token, service="instagram", client=client)

    # --- Graph API helpers ---------------------------------------------------------------------

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        response = self.api.request(method, path, **kwargs)
        if not response.is_success:
            self._raise_graph_error(response, what)
        return self.api.json(response, what)

    def _raise_graph_error(self, response: httpx.Response, what: str) -> None:
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        code, subcode = error.get("code"), error.get("error_subcode")
        message = (
            f"instagram: {what} failed (HTTP {response.status_code}, code {code}): "
            + str(error.get("message") or self.api.excerpt(response))[:300]
        )
        if subcode == QUOTA_SUBCODE:
            raise QuotaExhausted.after(message, self._retry_s(response))
        if code in RATE_LIMIT_CODES or response.status_code == 429:
            raise RateLimited.after(message, self._retry_s(response))
        if code in TRANSIENT_CODES or error.get("is_transient") or response.status_code >= 500:
            raise TransientError(message)
        raise PermanentFailure(message)

    def _retry_s(self, response: httpx.Response) -> float:
        """The platform's retry time: ``Retry-After``, else the usage headers, else ``quota_retry_s``."""
        wait = retry_after.retry_after_seconds(response.headers.get("retry-after"))
        if wait is None:
            wait = regain_access_s(response)
        return self.quota_retry_s if wait is None else wait

    def check_quota(self) -> tuple[int, int]:
        """``(used, total)`` of the 24 h publishing quota; raises ``QuotaExhausted`` when used up."""
        body = self._call(
            "GET",
            f"/{self.user_id}/content_publishing_limit",
            "content_publishing_limit",
            params={"fields": "quota_usage,config"},
        )
        entries = body.get("data") or [{}]
        entry = entries[0] if isinstance(entries, list) and entries else {}
        used = int(entry.get("quota_usage") or 0)
        total = int((entry.get("config") or {}).get("quota_total") or DEFAULT_QUOTA_TOTAL)
        if used >= total:
            raise QuotaExhausted.after(
                f"instagram: publishing quota used up ({used}/{total} posts in 24 h)", self.quota_retry_s
            )
        return used, total

    def container_status(self, container_id: str) -> tuple[str, str]:
        body = self._call(
            "GET", f"/{container_id}", "container status", params={"fields": "status_code,status"}
        )
        return str(body.get("status_code") or ""), str(body.get("status") or "")

    def wait_until_finished(self, container_id: str) -> str:
        """Poll the container until FINISHED (or PUBLISHED); bounded, with exponential backoff."""
        delay = self.poll_interval_s
        status = ""
        for attempt in range(self.poll_max):
            status, detail = self.container_status(container_id)
            if status in ("FINISHED", "PUBLISHED"):
                return status
            if status in ("ERROR", "EXPIRED"):
                hint = " (containers expire 24 h after creation)" if status == "EXPIRED" else ""
                raise PermanentFailure(
                    f"instagram: container {container_id} is {status}{hint}: {detail}"[:400]
                )
            if attempt + 1 < self.poll_max:
                self.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise TransientError(
            f"instagram: container {container_id} still {status or 'unknown'} after {self.poll_max} checks"
        )

    # --- Publisher protocol --------------------------------------------------------------------

    def prepare(self, publication: Publication) -> str | None:
        image_url = self.media.public_rendition_url(publication)
        self.check_quota()
        data = {"image_url": image_url, "caption": publication.caption}
        if publication.alt_text:
            data["alt_text"] = publication.alt_text
        if self.ai_disclosure_param:
            data[self.ai_disclosure_param] = "true"
        body = self._call("POST", f"/{self.user_id}/media", "create media container", data=data)
        container_id = body.get("id")
        if not container_id:
            raise TransientError(f"instagram: media container answer has no id: {str(body)[:200]}")
        return str(container_id)

    def publish(self, publication: Publication, container_id: str | None) -> PublishedPost:
        if not container_id:
            raise PermanentFailure("instagram: publish needs the media container id from prepare")
        if self.wait_until_finished(container_id) == "PUBLISHED":
            # An earlier run published it and crashed before recording the media id.
            return self._already_published(publication, container_id)
        self.check_quota()
        body = self._call(
            "POST", f"/{self.user_id}/media_publish", "media_publish", data={"creation_id": container_id}
        )
        media_id = body.get("id")
        if not media_id:
            raise TransientError(f"instagram: media_publish answer has no id: {str(body)[:200]}")
        return PublishedPost(str(media_id), self._permalink(str(media_id)), {"container_id": container_id})

    def _already_published(self, publication: Publication, container_id: str) -> PublishedPost:
        """The post an earlier run made from ``container_id``, found in the account's media list."""
        detail: dict[str, Any] = {"container_id": container_id, "note": "already published"}
        since = _timestamp_iso(publication.detail.get("container_created_at"))
        try:
            body = self._call(
                "GET",
                f"/{self.user_id}/media",
                "media list",
                params={"fields": "id,caption,timestamp,permalink", "limit": str(MEDIA_LOOKUP_LIMIT)},
            )
        except (PermanentFailure, TransientError, RateLimited) as exc:
            detail["note"] = f"already published; media id not looked up: {exc}"[:300]
            return PublishedPost(None, None, detail)
        caption = publication.caption.strip()
        matches = [
            item
            for item in body.get("data") or []
            if isinstance(item, dict)
            and str(item.get("caption") or "").strip() == caption
            and (since is None or ((ts := _timestamp(item.get("timestamp"))) and ts >= since - CLOCK_SKEW))
        ]
        if len(matches) != 1:
            found = "no post" if not matches else f"{len(matches)} posts"
            detail["note"] = (
                f"already published; {found} with this caption since the container was created among "
                f"the newest {MEDIA_LOOKUP_LIMIT}: media id unknown, check the account"
            )
            return PublishedPost(None, None, detail)
        media_id = str(matches[0]["id"])
        link = matches[0].get("permalink")
        return PublishedPost(media_id, link if isinstance(link, str) else self._permalink(media_id), detail)

    def _permalink(self, media_id: str) -> str | None:
        try:
            body = self._call("GET", f"/{media_id}", "permalink", params={"fields": "permalink"})
        except (PermanentFailure, TransientError, RateLimited):
            return None  # the post exists; a missing link is not worth failing it
        link = body.get("permalink")
        return link if isinstance(link, str) else None


def _timestamp_iso(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
