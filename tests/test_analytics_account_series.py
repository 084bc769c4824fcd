"""Account follower series of X (users/me public_metrics) and TikTok (user info follower_count).

``collect_due`` stores them as account days under the persona whose posts went out through the
platform's token, once a day, against local servers speaking each API; a missing stats scope is
reported by name and the post metrics are still kept.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import update
from support.insights import TIKTOK_TOKEN, X_TOKEN, FakeTikTokVideos, FakeXMetrics
from support.publishing import Request, Response, World, make_world, serve

from contentforge.analytics.collect import collect_due
from contentforge.analytics.tiktok import TikTokCollector
from contentforge.analytics.x import XCollector
from contentforge.db.analytics import AnalyticsStore
from contentforge.db.models import PublicationORM
from contentforge.outbound import OutboundPolicy
from contentforge.publishing.protocol import PublishedPost

X_POSTS = {"1": {"retweets": 1, "replies": 2, "likes": 30, "quotes": 0, "bookmarks": 1, "impressions": 900}}
VIDEOS = {"v1": {"view_count": 1000, "like_count": 50, "comment_count": 1, "share_count": 2}}
# A fixed clock: the posts went out at 09:00, so the 1 h and 6 h collections fall on the same day
# whatever the hour the suite runs (real now + 7 h crossed midnight on evening runs).
PUBLISHED_AT = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def loopback_client() -> httpx.Client:
    return OutboundPolicy(setting="test", allow_private=True).client(timeout=10)


class TikTokWithoutStatsScope(FakeTikTokVideos):
    """A token granted ``video.list`` but not ``user.info.stats``."""

    def handle(self, request: Request) -> Response:
        if request.path == "/v2/user/info/":
            return self._error(401, "scope_not_authorized", "The user did not authorize the scope required.")
        return super().handle(request)


def _published(tmp_path: Path) -> World:
    world = make_world(tmp_path, ["ready-safe", "ready-safe"])
    first, second = sorted(world.pieces)
    now = datetime.now(UTC)
    world.ledger.schedule(first, "x", now, publisher="x")
    world.ledger.schedule(second, "tiktok", now, publisher="tiktok")
    for claimed in world.ledger.claim_due(now=now + timedelta(minutes=1)):
        post_id = "1" if claimed.platform == "x" else "v1"
        world.ledger.mark_published(claimed.id, claimed.claim_token, PublishedPost(post_id))
    with world.engine.begin() as connection:
        connection.execute(update(PublicationORM).values(published_at=PUBLISHED_AT))
    return world


def test_x_and_tiktok_followers_are_stored_once_a_day_under_the_persona(tmp_path: Path) -> None:
    world = _published(tmp_path)
    store = AnalyticsStore(world.engine)
    now = PUBLISHED_AT + timedelta(hours=2)
    moments = [now]

    def clock() -> datetime:
        return moments[-1]

    with serve(FakeXMetrics(X_POSTS)) as x_api, serve(FakeTikTokVideos(VIDEOS)) as tiktok_api:
        collectors = {
            "x": XCollector(
                access_token=SecretStr(X_TOKEN), base_url=x_api.url, client=loopback_client(), clock=clock
            ),
            "tiktok": TikTokCollector(
                access_token=SecretStr(TIKTOK_TOKEN),
                base_url=tiktok_api.url,
                client=loopback_client(),
                clock=clock,
            ),
        }
        report = collect_due(store, collectors, now=now)
        assert (report.snapshots, report.account_days, report.errors) == (2, 2, {})
        moments.append(now + timedelta(hours=5))
        later = collect_due(store, collectors, now=moments[-1])  # the 6 h snapshots, the same day
        assert later.snapshots == 2 and later.account_days == 0
        assert x_api.calls["GET /2/users/me"] == 1 and tiktok_api.calls["GET /v2/user/info/"] == 1
    today = PUBLISHED_AT.date()
    assert [(d.day, d.followers, d.source) for d in store.account_days("mia", "x")] == [(today, 880, "api")]
    assert [(d.day, d.followers) for d in store.account_days("mia", "tiktok")] == [(today, 77)]


def test_a_missing_stats_scope_is_named_and_the_post_metrics_are_kept(tmp_path: Path) -> None:
    world = _published(tmp_path)
    store = AnalyticsStore(world.engine)
    with serve(TikTokWithoutStatsScope(VIDEOS)) as api:
        now = PUBLISHED_AT + timedelta(hours=2)
        collector = TikTokCollector(
            access_token=SecretStr(TIKTOK_TOKEN),
            base_url=api.url,
            client=loopback_client(),
            clock=lambda: now,
        )
        report = collect_due(store, {"tiktok": collector}, now=now)
    assert report.snapshots == 1 and report.account_days == 0
    assert "'user.info.stats'" in report.errors["tiktok account series"]
    assert [o.post_id for o in store.observations("mia", "tiktok")] == ["v1"]
    assert store.account_days("mia", "tiktok") == []
