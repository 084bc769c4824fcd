"""X API v2 metrics: ``public_metrics`` for every post, ``non_public_metrics`` where the token allows.

* ``GET /2/tweets?ids=…&tweet.fields=created_at,public_metrics,non_public_metrics`` (≤100 ids).
  ``non_public_metrics`` (impressions, link and profile clicks) needs a user-context token for the
  posts' own account and posts under 30 days old. An app-only token gets a "Field Authorization
  Error" (or HTTP 403) for that field; the collector then asks again with ``public_metrics`` only and
  keeps doing so.
* ``GET /2/users/{id}/tweets?start_time=…&max_results=100`` pages with ``meta.next_token`` →
  ``pagination_token``.
* ``GET /2/users/me?user.fields=public_metrics`` → today's followers.

A token without the ``tweet.read`` scope (HTTP 403 on the lookup itself) is ``MissingPermission``.
429 waits for ``x-rate-limit-reset`` as the publisher does.
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
from contentforge.publishing.http import ApiClient
from contentforge.publishing.x import DEFAULT_X_URL

READ_SCOPE = "tweet.read"
LOOKUP_MAX_IDS = 100
FIELD_AUTHORIZATION = "not-authorized-for-field"


class XCollector:
    platform = "x"

    def __init__(
        self,
        *,
        access_token: SecretStr,
        base_url: str = DEFAULT_X_URL,
        user_id: str | None = None,
        client: httpx.Client,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not access_token.get_secret_value():
            raise InvalidInput("CONTENTFORGE_X_ACCESS_TOKEN is required to collect X metrics")
        self.user_id = user_id
        self.non_public = True
        """False once X said this token may not read ``non_public_metrics``."""
        self.clock = clock
        """Which day 'today' is for the current follower count (tests run on a fixed clock)."""
        # ``client`` is required: a pinned outbound-policy client (``factory.build_collectors``)
        self.api = ApiClient(base_url, access_token, service="x", client=client)

    def _get(self, path: str, what: str, params: dict[str, Any]) -> dict[str, Any]:
        response = self.api.request("GET", path, params=params)
        if response.status_code == 403 and _field_refused(response):
            raise _FieldRefused()
        if response.status_code == 403:
            raise MissingPermission("x", READ_SCOPE, self.api.excerpt(response))
        self.api.raise_for_status(response, what)
        return self.api.json(response, what)

    def metrics(self, post_ids: Sequence[str]) -> dict[str, RemoteMetrics]:
        found: dict[str, RemoteMetrics] = {}
        ids = list(dict.fromkeys(post_ids))
        for start in range(0, len(ids), LOOKUP_MAX_IDS):
            for item in self._lookup(ids[start : start + LOOKUP_MAX_IDS]):
                public = item.get("public_metrics") or {}
                private = item.get("non_public_metrics") or {}
                values = {
                    "likes": public.get("like_count"),
                    "comments": public.get("reply_count"),
                    "shares": _sum(public.get("retweet_count"), public.get("quote_count")),
                    "saves": public.get("bookmark_count"),
                    "views": private.get("impression_count", public.get("impression_count")),
                }
                extra = {k: v for k, v in private.items() if k != "impression_count" and isinstance(v, int)}
                found[str(item["id"])] = RemoteMetrics(
                    str(item["id"]),
                    {k: int(v) for k, v in values.items() if isinstance(v, int)},
                    extra,
                    _timestamp(item.get("created_at")),
                )
        return found

    def _lookup(self, ids: list[str]) -> list[dict[str, Any]]:
        fields = "created_at,public_metrics" + (",non_public_metrics" if self.non_public else "")
        try:
            body = self._get("/2/tweets", "post lookup", {"ids": ",".join(ids), "tweet.fields": fields})
        except _FieldRefused:
            body = None
        if body is not None and self.non_public and _field_refused_in(body.get("errors") or []):
            body = None
        if body is None:
            if not self.non_public:
                raise MissingPermission("x", READ_SCOPE, "public_metrics refused")
            self.non_public = False
            return self._lookup(ids)
        return list(body.get("data") or [])

    def _me(self) -> dict[str, Any]:
        body = self._get("/2/users/me", "user lookup", {"user.fields": "public_metrics"})
        return dict(body.get("data") or {})

    def list_posts(self, since: datetime, limit: int = 500) -> list[RemotePost]:
        user_id = self.user_id or str(self._me()["id"])
        params: dict[str, Any] = {
            "max_results": 100,
            "tweet.fields": "created_at",
            "start_time": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        posts: list[RemotePost] = []
        while len(posts) < limit:
            body = self._get(f"/2/users/{user_id}/tweets", "timeline", params)
            for item in body.get("data") or []:
                posted = _timestamp(item.get("created_at"))
                if posted is not None:
                    posts.append(RemotePost(str(item["id"]), posted, str(item.get("text") or "")))
            token = (body.get("meta") or {}).get("next_token")
            if not token:
                break
            params = {**params, "pagination_token": token}
        return posts[:limit]

    def account_days(self, since: date, until: date) -> list[AccountDay]:
        """X offers no daily history to this API tier: today's follower count only."""
        today = self.clock().date()
        if not since <= today <= until:
            return []
        me = self._me()
        followers = (me.get("public_metrics") or {}).get("followers_count")
        account = self.user_id or str(me.get("id") or "")
        if not isinstance(followers, int):
            return []
        return [AccountDay(account, self.platform, today, "api", followers=followers)]


class _FieldRefused(Exception):
    pass


def _field_refused(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and _field_refused_in(body.get("errors") or [body])


def _field_refused_in(errors: list[Any]) -> bool:
    return any(
        isinstance(e, dict) and FIELD_AUTHORIZATION in str(e.get("type", "")) and "non_public" in str(e)
        for e in errors
    )


def _sum(*values: object) -> int | None:
    ints = [int(v) for v in values if isinstance(v, int)]
    return sum(ints) if ints else None


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
