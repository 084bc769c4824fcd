"""Instagram Graph API insights: media metrics, the account's media list and its daily reach.

* ``GET /{ig-media-id}/insights?metric=reach,views,likes,comments,saved,shares`` → ``data`` with one
  entry per metric, its value in ``values[0].value`` (or ``total_value.value`` in newer versions).
  Media too young or with too few viewers answers code 10 "Not enough viewers": no numbers yet,
  the post is left out rather than recorded as zero.
* ``GET /{ig-user-id}/media?fields=id,caption,timestamp`` pages with ``paging.cursors.after`` while
  ``paging.next`` is present.
* ``GET /{ig-user-id}/insights?metric=reach&period=day&since&until`` → daily reach;
  ``GET /{ig-user-id}?fields=followers_count`` → today's followers.

Reading insights needs ``instagram_manage_insights`` (Facebook Login) or
``instagram_business_manage_insights`` (Instagram Login); without it the Graph API answers a
permissions error (code 10 or 200), which becomes ``MissingPermission`` naming it. Rate limits
(429 or the Graph "too many calls" codes) wait for ``Retry-After`` or the usage headers, as the
publisher does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from contentforge import retry_after
from contentforge.analytics.protocol import MissingPermission, RemoteMetrics, RemotePost, utc_now
from contentforge.domain.analytics import AccountDay
from contentforge.errors import InvalidInput
from contentforge.publishing.http import ApiClient
from contentforge.publishing.instagram import (
    DEFAULT_GRAPH_URL,
    RATE_LIMIT_CODES,
    TRANSIENT_CODES,
    regain_access_s,
)
from contentforge.publishing.protocol import PermanentFailure, RateLimited, TransientError

INSIGHTS_PERMISSION = "instagram_manage_insights"
MEDIA_METRICS = {"reach": "reach", "views": "views", "likes": "likes", "comments": "comments",
                 "saved": "saves", "shares": "shares"}  # fmt: skip
"""Graph API metric name → ContentForge metric."""
PERMISSION_CODES = frozenset({10, 200})
NOT_ENOUGH_VIEWERS = "not enough viewers"
PAGE_SIZE = 50


class _NoInsightsYet(Exception):
    pass


class InstagramCollector:
    platform = "instagram"

    def __init__(
        self,
        *,
        user_id: str,
        access_token: SecretStr,
        base_url: str = DEFAULT_GRAPH_URL,
        client: httpx.Client,
        default_retry_s: float = 3600.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not user_id:
            raise InvalidInput("CONTENTFORGE_INSTAGRAM_USER_ID is required to collect Instagram metrics")
        if not access_token.get_secret_value():
            raise InvalidInput("CONTENTFORGE_INSTAGRAM_ACCESS_TOKEN is required to collect Instagram metrics")
        self.user_id = user_id
        self.default_retry_s = default_retry_s
        self.clock = clock
        """Which day 'today' is for the current follower count (tests run on a fixed clock)."""
        # ``client`` is required: a pinned outbound-policy client (``factory.build_collectors``)
        self.api = ApiClient(base_url, access_token, service="instagram", client=client)

    def _get(self, path: str, what: str, params: dict[str, Any]) -> dict[str, Any]:
        response = self.api.request("GET", path, params=params)
        if not response.is_success:
            self._raise(response, what)
        return self.api.json(response, what)

    def _raise(self, response: httpx.Response, what: str) -> None:
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        code = error.get("code")
        text = str(error.get("message") or self.api.excerpt(response))[:300]
        message = f"instagram: {what} failed (HTTP {response.status_code}, code {code}): {text}"
        if code in RATE_LIMIT_CODES or response.status_code == 429:
            wait = retry_after.retry_after_seconds(response.headers.get("retry-after"))
            wait = wait if wait is not None else regain_access_s(response)
            raise RateLimited.after(message, self.default_retry_s if wait is None else wait)
        if code == 10 and NOT_ENOUGH_VIEWERS in text.lower():
            raise _NoInsightsYet(text)
        if code in PERMISSION_CODES:
            raise MissingPermission("instagram", INSIGHTS_PERMISSION, text)
        if code in TRANSIENT_CODES or error.get("is_transient") or response.status_code >= 500:
            raise TransientError(message)
        raise PermanentFailure(message)

    def metrics(self, post_ids: Sequence[str]) -> dict[str, RemoteMetrics]:
        found: dict[str, RemoteMetrics] = {}
        for post_id in post_ids:
            try:
                body = self._get(
                    f"/{post_id}/insights",
                    f"insights of media {post_id}",
                    {"metric": ",".join(MEDIA_METRICS)},
                )
            except _NoInsightsYet:
                continue
            values: dict[str, int] = {}
            for entry in body.get("data") or []:
                name = MEDIA_METRICS.get(str(entry.get("name")))
                value = _value_of(entry)
                if name is not None and value is not None:
                    values[name] = value
            found[post_id] = RemoteMetrics(post_id, values)
        return found

    def list_posts(self, since: datetime, limit: int = 500) -> list[RemotePost]:
        posts: list[RemotePost] = []
        params: dict[str, Any] = {"fields": "id,caption,timestamp", "limit": PAGE_SIZE}
        while len(posts) < limit:
            body = self._get(f"/{self.user_id}/media", "media list", params)
            for item in body.get("data") or []:
                posted = _timestamp(item.get("timestamp"))
                if posted is None:
                    continue
                if posted < since:
                    return posts
                posts.append(RemotePost(str(item["id"]), posted, str(item.get("caption") or "")))
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                break
            params = {**params, "after": after}
        return posts[:limit]

    def account_days(self, since: date, until: date) -> list[AccountDay]:
        start = datetime.combine(since, time(), UTC)
        end = datetime.combine(until + timedelta(days=1), time(), UTC)
        body = self._get(
            f"/{self.user_id}/insights",
            "account insights",
            {
                "metric": "reach",
                "period": "day",
                "since": int(start.timestamp()),
                "until": int(end.timestamp()),
            },
        )
        reach: dict[date, int] = {}
        for entry in body.get("data") or []:
            if entry.get("name") != "reach":
                continue
            for point in entry.get("values") or []:
                ended = _timestamp(point.get("end_time"))
                if ended is not None and isinstance(point.get("value"), int):
                    # A day's value is reported with the end of that day (midnight after it).
                    reach[(ended - timedelta(seconds=1)).date()] = int(point["value"])
        followers = self._get(f"/{self.user_id}", "followers count", {"fields": "followers_count"})
        today = self.clock().date()
        days = [AccountDay(self.user_id, self.platform, d, "api", reach=v) for d, v in sorted(reach.items())]
        count = followers.get("followers_count")
        if isinstance(count, int) and since <= today <= until:
            days = [d for d in days if d.day != today]
            days.append(AccountDay(self.user_id, self.platform, today, "api", count, reach.get(today)))
        return days


def _value_of(entry: dict[str, Any]) -> int | None:
    total = entry.get("total_value")
    if isinstance(total, dict) and isinstance(total.get("value"), int):
        return int(total["value"])
    values = entry.get("values") or []
    if values and isinstance(values[0], dict) and isinstance(values[0].get("value"), int):
        return int(values[0]["value"])
    return None


def _timestamp(value: object) -> datetime | None:
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None
