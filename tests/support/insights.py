"""Fakes of the platforms' insights APIs, speaking their documented request and answer shapes.

Each holds the account's posts with their metrics and can be told to answer the next request with
a rate limit, or to refuse for a missing permission, the way the platform does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support.publishing import FakeApi, Request, Response

IG_TOKEN = "IGQVJ-insights-token-abcdef"
IG_USER = "17841400000000009"
X_TOKEN = "x-user-context-token-abcdef"
TIKTOK_TOKEN = "act.tiktok-token-abcdef"


class FakeGraphInsights(FakeApi):
    """``/{media}/insights``, ``/{user}/media`` (paged), ``/{user}/insights`` and followers."""

    def __init__(self, media: dict[str, dict[str, int]], *, page_size: int = 2) -> None:
        super().__init__()
        self.media = media  # media id → graph metric name → value
        self.posted = {
            mid: datetime(2026, 3, 1, 9, tzinfo=UTC) - timedelta(days=i) for i, mid in enumerate(media)
        }
        self.page_size = page_size
        self.too_young: set[str] = set()
        self.rate_limit_next = 0
        self.permission = True
        self.daily_reach = [(datetime(2026, 3, 2, 8, tzinfo=UTC).date(), 1200)]

    def handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {IG_TOKEN}":
            return 400, {}, {"error": {"message": "Invalid OAuth access token", "code": 190}}
        if self.rate_limit_next:
            self.rate_limit_next -= 1
            return (
                429,
                {"Retry-After": "120"},
                {"error": {"message": "Application request limit reached", "code": 4}},
            )
        path = request.path.removeprefix("/v21.0")
        insights_denied = {
            "error": {
                "message": "(#10) Application does not have permission for this action",
                "type": "OAuthException",
                "code": 10,
            }
        }
        if path == f"/{IG_USER}/media":
            assert request.query["fields"] == ["id,caption,timestamp"]
            ids = list(self.media)
            start = ids.index(request.query["after"][0]) + 1 if "after" in request.query else 0
            page = ids[start : start + self.page_size]
            body: dict = {
                "data": [
                    {
                        "id": m,
                        "caption": f"post {m} #fitness",
                        "timestamp": self.posted[m].strftime("%Y-%m-%dT%H:%M:%S+0000"),
                    }
                    for m in page
                ]
            }
            if start + self.page_size < len(ids):
                body["paging"] = {"cursors": {"after": page[-1]}, "next": "https://graph.facebook.com/next"}
            return 200, {}, body
        if path == f"/{IG_USER}/insights":
            if not self.permission:
                return 403, {}, insights_denied
            assert request.query["metric"] == ["reach"] and request.query["period"] == ["day"]
            values = [
                {
                    "value": v,
                    "end_time": (datetime.combine(d, datetime.min.time(), UTC) + timedelta(days=1)).strftime(
                        "%Y-%m-%dT%H:%M:%S+0000"
                    ),
                }
                for d, v in self.daily_reach
            ]
            return 200, {}, {"data": [{"name": "reach", "period": "day", "values": values}]}
        if path == f"/{IG_USER}":
            return 200, {}, {"followers_count": 5321, "id": IG_USER}
        media_id = path.strip("/").removesuffix("/insights")
        if path.endswith("/insights") and media_id in self.media:
            if not self.permission:
                return 403, {}, insights_denied
            if media_id in self.too_young:
                return (
                    400,
                    {},
                    {
                        "error": {
                            "message": "(#10) Not enough viewers for the media to show insights",
                            "code": 10,
                        }
                    },
                )
            wanted = request.query["metric"][0].split(",")
            data = []
            for i, name in enumerate(wanted):
                if name not in self.media[media_id]:
                    continue
                value = self.media[media_id][name]
                # Both documented answer shapes: lifetime ``values`` and the newer ``total_value``.
                shape = {"values": [{"value": value}]} if i % 2 == 0 else {"total_value": {"value": value}}
                data.append(
                    {
                        "name": name,
                        "period": "lifetime",
                        "id": f"{media_id}/insights/{name}/lifetime",
                        **shape,
                    }
                )
            return 200, {}, {"data": data}
        return 404, {}, {"error": {"message": "Unsupported get request", "code": 100}}


class FakeXMetrics(FakeApi):
    """``GET /2/tweets`` with public/non-public metrics, ``/2/users/:id/tweets`` paged, ``/2/users/me``."""

    def __init__(
        self, posts: dict[str, dict[str, int]], *, user_context: bool = True, page_size: int = 2
    ) -> None:
        super().__init__()
        self.posts = posts
        self.user_context = user_context
        self.page_size = page_size
        self.scopes_ok = True
        self.rate_limit_next = 0

    def handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {X_TOKEN}":
            return 401, {}, {"title": "Unauthorized", "status": 401}
        if self.rate_limit_next:
            self.rate_limit_next -= 1
            reset = int(datetime.now(UTC).timestamp()) + 900
            return 429, {"x-rate-limit-reset": str(reset)}, {"title": "Too Many Requests", "status": 429}
        if not self.scopes_ok:
            return (
                403,
                {},
                {
                    "title": "Forbidden",
                    "type": "about:blank",
                    "detail": "missing scope tweet.read",
                    "status": 403,
                },
            )
        if request.path == "/2/tweets":
            fields = request.query["tweet.fields"][0].split(",")
            ids = request.query["ids"][0].split(",")
            assert len(ids) <= 100
            if "non_public_metrics" in fields and not self.user_context:
                errors = [{
                    "title": "Field Authorization Error",
                    "type": "https://api.twitter.com/2/problems/not-authorized-for-field",
                    "field": "non_public_metrics",
                    "detail": "Sorry, you are not authorized to access non_public_metrics on a Tweet.",
                }]  # fmt: skip
                return 200, {}, {"errors": errors}
            data = []
            for post_id in ids:
                if post_id not in self.posts:
                    continue
                m = self.posts[post_id]
                item: dict = {
                    "id": post_id,
                    "created_at": "2026-03-01T09:00:00.000Z",
                    "text": "hi",
                    "public_metrics": {
                        "retweet_count": m["retweets"], "reply_count": m["replies"], "like_count": m["likes"],
                        "quote_count": m["quotes"], "bookmark_count": m["bookmarks"],
                        "impression_count": m["impressions"],
                    },
                }  # fmt: skip
                if "non_public_metrics" in fields:
                    item["non_public_metrics"] = {
                        "impression_count": m["impressions"], "url_link_clicks": 7, "user_profile_clicks": 3,
                    }  # fmt: skip
                data.append(item)
            return 200, {}, {"data": data}
        if request.path == "/2/users/me":
            return (
                200,
                {},
                {"data": {"id": "42", "username": "mia", "public_metrics": {"followers_count": 880}}},
            )
        if request.path == "/2/users/42/tweets":
            ids = list(self.posts)
            start = int(request.query.get("pagination_token", ["0"])[0])
            page = ids[start : start + self.page_size]
            body: dict = {
                "data": [{"id": p, "text": "t", "created_at": "2026-03-01T09:00:00.000Z"} for p in page]
            }
            body["meta"] = {"result_count": len(page)}
            if start + self.page_size < len(ids):
                body["meta"]["next_token"] = str(start + self.page_size)
            return 200, {}, body
        return 404, {}, {"title": "Not Found"}


class FakeTikTokVideos(FakeApi):
    """``/v2/video/query/``, ``/v2/video/list/`` (cursor, has_more) and ``/v2/user/info/``."""

    def __init__(self, videos: dict[str, dict[str, int]], *, page_size: int = 2) -> None:
        super().__init__()
        self.videos = videos
        self.page_size = page_size
        self.scopes: set[str] = {"video.list", "user.info.stats"}
        self.rate_limit_next = 0
        self.created = {
            v: int(datetime(2026, 3, 1, 9, tzinfo=UTC).timestamp()) - i * 86400 for i, v in enumerate(videos)
        }

    def _error(self, status: int, code: str, message: str) -> Response:
        return status, {}, {"data": {}, "error": {"code": code, "message": message, "log_id": "log1"}}

    def _video(self, vid: str) -> dict:
        return {"id": vid, "create_time": self.created[vid], **self.videos[vid]}

    def handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TIKTOK_TOKEN}":
            return self._error(401, "access_token_invalid", "The access token is invalid or not found.")
        if self.rate_limit_next:
            self.rate_limit_next -= 1
            return self._error(429, "rate_limit_exceeded", "API rate limit was exceeded.")
        ok = {"code": "ok", "message": "", "log_id": "log1"}
        if request.path in ("/v2/video/query/", "/v2/video/list/"):
            if "video.list" not in self.scopes:
                return self._error(
                    401, "scope_not_authorized", "The user did not authorize the scope required."
                )
            assert request.query["fields"][0].split(",")[0] == "id"
            body = request.json()
            if request.path == "/v2/video/query/":
                ids = body["filters"]["video_ids"]
                assert len(ids) <= 20
                return (
                    200,
                    {},
                    {"data": {"videos": [self._video(v) for v in ids if v in self.videos]}, "error": ok},
                )
            ids = list(self.videos)
            start = int(body.get("cursor", 0))
            page = ids[start : start + min(body["max_count"], self.page_size)]
            more = start + len(page) < len(ids)
            data = {"videos": [self._video(v) for v in page], "cursor": start + len(page), "has_more": more}
            return 200, {}, {"data": data, "error": ok}
        if request.path == "/v2/user/info/":
            return 200, {}, {"data": {"user": {"follower_count": 77}}, "error": ok}
        return self._error(404, "not_found", "no such endpoint")
