"""TikTok video metrics (Display API): ``/v2/video/query/`` and ``/v2/video/list/``.

* ``POST /v2/video/query/?fields=id,create_time,view_count,like_count,comment_count,share_count``
  with ``{"filters": {"video_ids": […]}}`` (≤20 ids) → ``data.videos``.
* ``POST /v2/video/list/?fields=…`` with ``{"max_count": 20, "cursor": …}`` → ``data.videos``,
  ``data.cursor``, ``data.has_more``: the pagination.
* ``GET /v2/user/info/?fields=follower_count`` → today's followers (scope ``user.info.stats``).

Every answer carries ``error.code`` (``ok`` on success). ``scope_not_authorized`` becomes
``MissingPermission`` naming ``video.list`` (or ``user.info.stats``); ``rate_limit_exceeded`` / 429
waits as the publisher does; 5xx is transient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from contentforge.analytics.protocol import MissingPermission, RemoteMetrics, RemotePost, utc_now
from contentforge.domain.analytics import AccountDay
from contentforge.errors import InvalidInput
from contentforge.publishing.http import ApiClient, retry_after_seconds
from contentforge.publishing.protocol import PermanentFailure, RateLimited, TransientError
from contentforge.publishing.tiktok import DEFAULT_TIKTOK_URL

VIDEO_FIELDS = "id,create_time,view_count,like_count,comment_count,share_count"
QUERY_MAX_IDS = 20
VIDEO_SCOPE = "video.list"
STATS_SCOPE = "user.info.stats"


class TikTokCollector:
    platform = "tiktok"

    def __init__(
        self,
        *,
        access_token: SecretStr,
        base_url: str = DEFAULT_TIKTOK_URL,
        account: str = "tiktok",
        client: httpx.Client,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not access_token.get_secret_value():
            raise InvalidInput("CONTENTFORGE_TIKTOK_ACCESS_TOKEN is required to collect TikTok metrics")
        self.account = account
        self.clock = clock
        """Which day 'today' is for the current follower count (tests run on a fixed clock)."""
        # ``client`` is required: a pinned outbound-policy client (``factory.build_collectors``)
        self.api = ApiClient(base_url, access_token, service="tiktok", client=client)

    def _call(self, method: str, path: str, what: str, scope: str, **kwargs: Any) -> dict[str, Any]:
        response = self.api.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        error = body.get("error") or {}
        code = str(error.get("code") or ("ok" if response.is_success else "unknown"))
        if response.is_success and code == "ok":
            return dict(body.get("data") or {})
        message = f"tiktok: {what} failed (HTTP {response.status_code}, {code}): {error.get('message') or ''}"
        message = message.strip()[:400]
        if code == "scope_not_authorized":
            raise MissingPermission("tiktok", scope, str(error.get("message") or ""))
        if code == "rate_limit_exceeded" or response.status_code == 429:
            raise RateLimited.after(message, retry_after_seconds(response, default=60.0))
        if response.status_code >= 500 or code == "internal_error":
            raise TransientError(message)
        raise PermanentFailure(message)

    def metrics(self, post_ids: Sequence[str]) -> dict[str, RemoteMetrics]:
        found: dict[str, RemoteMetrics] = {}
        ids = list(dict.fromkeys(post_ids))
        for start in range(0, len(ids), QUERY_MAX_IDS):
            data = self._call(
                "POST",
                "/v2/video/query/",
                "video query",
                VIDEO_SCOPE,
                params={"fields": VIDEO_FIELDS},
                json={"filters": {"video_ids": ids[start : start + QUERY_MAX_IDS]}},
            )
            for video in data.get("videos") or []:
                found[str(video["id"])] = _metrics_of(video)
        return found

    def list_posts(self, since: datetime, limit: int = 500) -> list[RemotePost]:
        posts: list[RemotePost] = []
        payload: dict[str, Any] = {"max_count": 20}
        while len(posts) < limit:
            data = self._call(
                "POST",
                "/v2/video/list/",
                "video list",
                VIDEO_SCOPE,
                params={"fields": VIDEO_FIELDS},
                json=payload,
            )
            for video in data.get("videos") or []:
                posted = _created(video)
                if posted is None:
                    continue
                if posted < since:
                    return posts
                posts.append(RemotePost(str(video["id"]), posted))
            if not data.get("has_more") or data.get("cursor") is None:
                break
            payload = {**payload, "cursor": data["cursor"]}
        return posts[:limit]

    def account_days(self, since: date, until: date) -> list[AccountDay]:
        """TikTok's Display API has no daily history: today's follower count only."""
        today = self.clock().date()
        if not since <= today <= until:
            return []
        data = self._call(
            "GET", "/v2/user/info/", "user info", STATS_SCOPE, params={"fields": "follower_count"}
        )
        followers = (data.get("user") or {}).get("follower_count")
        if not isinstance(followers, int):
            return []
        return [AccountDay(self.account, self.platform, today, "api", followers=followers)]


def _created(video: dict[str, Any]) -> datetime | None:
    created = video.get("create_time")
    return datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None


def _metrics_of(video: dict[str, Any]) -> RemoteMetrics:
    names = {
        "view_count": "views",
        "like_count": "likes",
        "comment_count": "comments",
        "share_count": "shares",
    }
    values = {
        ours: int(video[theirs]) for theirs, ours in names.items() if isinstance(video.get(theirs), int)
    }
    return RemoteMetrics(str(video["id"]), values, posted_at=_created(video))
