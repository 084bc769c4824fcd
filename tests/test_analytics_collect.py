"""Metrics collection against local servers speaking each platform's insights API, the CSV import and
the analytics store, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from support.insights import (
    IG_TOKEN,
    IG_USER,
    TIKTOK_TOKEN,
    X_TOKEN,
    FakeGraphInsights,
    FakeTikTokVideos,
    FakeXMetrics,
)
from support.publishing import make_world, serve

from contentforge.analytics.collect import collect_due
from contentforge.analytics.csv_import import import_csv
from contentforge.analytics.factory import build_collectors
from contentforge.analytics.instagram import InstagramCollector
from contentforge.analytics.protocol import MissingPermission, RateLimited
from contentforge.analytics.tiktok import TikTokCollector
from contentforge.analytics.x import XCollector
from contentforge.config import Settings
from contentforge.db import make_engine, migrate
from contentforge.db.analytics import AnalyticsStore, SimulatedMixing
from contentforge.domain.analytics import AccountDay, LearnedWeight, PostMetrics
from contentforge.errors import InvalidInput
from contentforge.outbound import OutboundPolicy
from contentforge.publishing.protocol import PermanentFailure, PublishedPost

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def loopback_client() -> httpx.Client:
    """A pinned policy client that may reach the loopback fakes (what an opted-in setting gets)."""
    return OutboundPolicy(setting="test", allow_private=True).client(timeout=10)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'a.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> AnalyticsStore:
    return AnalyticsStore(engine)


def obs(
    post_id: str, age: int = 24, likes: int = 10, source: str = "api", account: str = "mia"
) -> PostMetrics:
    return PostMetrics(
        account=account, platform="instagram", post_id=post_id, posted_at=NOW - timedelta(days=2),
        age_hours=age, collected_at=NOW, source=source, reach=100, likes=likes,
        features={"hashtags": ["gym"]},
    )  # fmt: skip


# --- the store --------------------------------------------------------------------------------------


def test_snapshots_are_one_per_post_and_age_and_a_repeat_replaces_instead_of_adding(
    store: AnalyticsStore,
) -> None:
    first = store.record([obs("m1"), obs("m2"), obs("m1", age=72, likes=30)])
    assert (first.posts_added, first.snapshots_added, first.snapshots_replaced) == (2, 3, 0)
    again = store.record([obs("m1", likes=12)])
    assert (again.posts_added, again.snapshots_added, again.snapshots_replaced) == (0, 0, 1)
    rows = store.observations("mia", "instagram")
    assert [(o.post_id, o.age_hours, o.likes) for o in rows] == [
        ("m1", 24, 12),
        ("m1", 72, 30),
        ("m2", 24, 10),
    ]
    assert store.observations("mia", "instagram", age_hours=72)[0].features == {"hashtags": ["gym"]}


def test_real_and_simulated_data_are_never_mixed_in_one_account(store: AnalyticsStore) -> None:
    store.record([obs("m1")])
    with pytest.raises(SimulatedMixing, match="holds real data; simulated data is never mixed"):
        store.record([obs("s1", source="simulated")])
    store.record([obs("s1", source="simulated", account="demo")])
    assert [(a.account, a.simulated) for a in store.accounts()] == [("demo", True), ("mia", False)]
    store.record_account_days([AccountDay("mia", "instagram", date(2026, 3, 1), "api", reach=5)])
    with pytest.raises(SimulatedMixing):
        store.record_account_days([AccountDay("mia", "instagram", date(2026, 3, 2), "simulated", reach=5)])


def test_account_days_replace_by_day_and_weights_replace_the_previous_run(store: AnalyticsStore) -> None:
    day = date(2026, 3, 1)
    assert store.record_account_days([AccountDay("mia", "x", day, "api", 10, 100)]) == 1
    assert store.record_account_days([AccountDay("mia", "x", day, "api", 11, 120)]) == 0
    assert [(d.followers, d.reach) for d in store.account_days("mia", "x")] == [(11, 120)]
    store.save_weights(
        "mia", "x", [LearnedWeight("hashtag", "gym", 1.3, 1.1, 1.5, 12)], simulated=False, computed_at=NOW
    )
    store.save_weights(
        "mia", "x", [LearnedWeight("tier", "safe", 1.0, 0.9, 1.1, 40)], simulated=False, computed_at=NOW
    )
    assert [w.key for w in store.weights("mia", "x")] == ["safe"]


def test_an_alert_is_recorded_once_and_a_pause_holds_until_it_ends_or_is_resumed(
    store: AnalyticsStore,
) -> None:
    alert, created = store.add_alert(
        "mia", "x", "reach_drop", date(2026, 3, 5), {"drop": 0.6}, simulated=False
    )
    again, created_again = store.add_alert(
        "mia", "x", "reach_drop", date(2026, 3, 5), {"drop": 0.7}, simulated=False
    )
    assert (created, created_again, again.id) == (True, False, alert.id)
    pause = store.pause(
        "mia", "x", until=NOW + timedelta(hours=24), reason="reach drop", now=NOW, alert_id=alert.id
    )
    assert store.active_pause("mia", "x", NOW + timedelta(hours=1)) == pause
    assert store.active_pause("mia", "instagram", NOW) is None
    assert store.active_pause("mia", "x", NOW + timedelta(hours=25)) is None  # automatic resume
    extended = store.pause("mia", "x", until=NOW + timedelta(hours=48), reason="still low", now=NOW)
    assert extended.id == pause.id and len(store.pauses("mia")) == 1
    assert store.resume("mia", "x", by="ops", now=NOW + timedelta(hours=2)) == 1
    assert store.active_pause("mia", "x", NOW + timedelta(hours=3)) is None
    with pytest.raises(InvalidInput, match="needs a reason"):
        store.pause("mia", "x", until=NOW, reason=" ", now=NOW)


# --- Instagram --------------------------------------------------------------------------------------

IG_MEDIA = {
    "m1": {"reach": 900, "views": 1500, "likes": 80, "comments": 6, "saved": 12, "shares": 4},
    "m2": {"reach": 300, "views": 420, "likes": 20, "comments": 1, "saved": 2, "shares": 0},
    "m3": {"reach": 10, "views": 11, "likes": 1, "comments": 0, "saved": 0, "shares": 0},
    "m4": {"reach": 50, "views": 60, "likes": 3, "comments": 0, "saved": 0, "shares": 1},
    "m5": {"reach": 70, "views": 90, "likes": 5, "comments": 0, "saved": 1, "shares": 0},
}


def ig(api: FakeGraphInsights, token: str = IG_TOKEN) -> InstagramCollector:
    return InstagramCollector(
        user_id=IG_USER, access_token=SecretStr(token), base_url=f"{api.url}/v21.0", client=loopback_client()
    )


def test_instagram_media_insights_in_both_answer_shapes_and_young_media_left_out() -> None:
    with serve(FakeGraphInsights(IG_MEDIA)) as api:
        api.too_young = {"m3"}
        found = ig(api).metrics(["m1", "m3"])
    assert set(found) == {"m1"}
    assert found["m1"].values == {
        "reach": 900,
        "views": 1500,
        "likes": 80,
        "comments": 6,
        "saves": 12,
        "shares": 4,
    }
    request = api.requests[0]
    assert request.query["metric"] == ["reach,views,likes,comments,saved,shares"]
    assert IG_TOKEN not in request.path + str(request.query)  # the token travels in the header only


def test_instagram_media_list_follows_the_cursor_pagination_and_stops_at_since() -> None:
    with serve(FakeGraphInsights(IG_MEDIA, page_size=2)) as api:
        posts = ig(api).list_posts(since=datetime(2026, 2, 1, tzinfo=UTC))
        recent = ig(api).list_posts(since=datetime(2026, 2, 27, 12, tzinfo=UTC))
    assert [p.post_id for p in posts] == ["m1", "m2", "m3", "m4", "m5"]
    assert [r.query.get("after") for r in api.requests[:3]] == [None, ["m2"], ["m4"]]
    assert [p.post_id for p in recent] == ["m1", "m2"]  # m3 (Feb 27, 09:00) is older


def test_instagram_rate_limit_and_missing_insights_permission_give_typed_errors() -> None:
    with serve(FakeGraphInsights(IG_MEDIA)) as api:
        api.rate_limit_next = 1
        with pytest.raises(RateLimited) as limited:
            ig(api).metrics(["m1"])
        assert 100 < (limited.value.retry_at - datetime.now(UTC)).total_seconds() <= 120
        api.permission = False
        with pytest.raises(MissingPermission) as denied:
            ig(api).metrics(["m1"])
        with pytest.raises(MissingPermission):
            ig(api).account_days(date(2026, 3, 1), date(2026, 3, 2))
    assert "instagram_manage_insights" in str(denied.value) and "\n" not in str(denied.value)
    assert IG_TOKEN not in str(denied.value)


def test_instagram_account_days_carry_daily_reach() -> None:
    with serve(FakeGraphInsights(IG_MEDIA)) as api:
        days = ig(api).account_days(date(2026, 3, 1), date(2026, 3, 3))
    assert [(d.day, d.reach) for d in days] == [(date(2026, 3, 2), 1200)]


def test_collectors_refuse_a_private_api_url_and_pin_every_request_to_checked_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bearer token must never reach a loopback, private or metadata address (review finding 1)."""

    def configured(url: str, allow: str) -> Settings:
        return Settings(  # type: ignore[call-arg]
            _env_file=None, instagram_graph_url=url, instagram_user_id=IG_USER,
            instagram_access_token=SecretStr(IG_TOKEN), allow_private_urls=allow,
        )  # fmt: skip

    with serve(FakeGraphInsights(IG_MEDIA)) as api:
        collectors, missing = build_collectors(configured(f"{api.url}/v21.0", allow=""))
        assert "instagram" not in collectors
        assert "CONTENTFORGE_INSTAGRAM_GRAPH_URL" in missing["instagram"]
        assert "CONTENTFORGE_ALLOW_PRIVATE_URLS=instagram_graph_url" in missing["instagram"]
        assert IG_TOKEN not in missing["instagram"]
        # a public-looking name that resolves to loopback (DNS rebinding) passes the static check, but
        # every request is resolved, checked and pinned again, so it is refused before connecting
        port = api.url.rsplit(":", 1)[1]
        monkeypatch.setattr("contentforge.outbound.resolve_host", lambda host, port: ["127.0.0.1"])
        collectors, _ = build_collectors(configured(f"http://insights.example.com:{port}/v21.0", allow=""))
        with pytest.raises(PermanentFailure, match="non-public address"):
            collectors["instagram"].metrics(["m1"])
        assert api.requests == []
        opted_in, _ = build_collectors(configured(f"{api.url}/v21.0", allow="instagram_graph_url"))
        assert opted_in["instagram"].metrics(["m1"])["m1"].values["reach"] == 900


# --- X ----------------------------------------------------------------------------------------------

X_POSTS = {
    str(i): {
        "retweets": 2,
        "replies": 3,
        "likes": 10 + i,
        "quotes": 1,
        "bookmarks": 4,
        "impressions": 500 + i,
    }
    for i in range(1, 6)
}


def x_collector(api: FakeXMetrics) -> XCollector:
    return XCollector(access_token=SecretStr(X_TOKEN), base_url=api.url, client=loopback_client())


def test_x_public_and_non_public_metrics_with_a_user_context_token() -> None:
    with serve(FakeXMetrics(X_POSTS)) as api:
        found = x_collector(api).metrics(["1", "2", "99"])
    assert set(found) == {"1", "2"}
    assert found["1"].values == {"likes": 11, "comments": 3, "shares": 3, "saves": 4, "views": 501}
    assert found["1"].extra == {"url_link_clicks": 7, "user_profile_clicks": 3}
    assert "non_public_metrics" in api.requests[0].query["tweet.fields"][0]


def test_x_app_only_token_falls_back_to_public_metrics_and_remembers() -> None:
    with serve(FakeXMetrics(X_POSTS, user_context=False)) as api:
        collector = x_collector(api)
        first = collector.metrics(["1"])
        collector.metrics(["2"])
    assert first["1"].values["views"] == 501 and first["1"].extra == {}
    fields = [r.query["tweet.fields"][0] for r in api.requests]
    assert fields == [
        "created_at,public_metrics,non_public_metrics",
        "created_at,public_metrics",
        "created_at,public_metrics",
    ]


def test_x_timeline_pagination_rate_limit_and_missing_scope() -> None:
    with serve(FakeXMetrics(X_POSTS, page_size=2)) as api:
        posts = x_collector(api).list_posts(since=datetime(2026, 2, 1, tzinfo=UTC))
        assert [p.post_id for p in posts] == ["1", "2", "3", "4", "5"]
        assert [r.query.get("pagination_token") for r in api.requests if "tweets" in r.path] == [
            None,
            ["2"],
            ["4"],
        ]
        api.rate_limit_next = 1
        with pytest.raises(RateLimited) as limited:
            x_collector(api).metrics(["1"])
        assert 800 < (limited.value.retry_at - datetime.now(UTC)).total_seconds() <= 901
        api.scopes_ok = False
        with pytest.raises(MissingPermission, match=r"'tweet\.read'"):
            x_collector(api).metrics(["1"])


# --- TikTok -----------------------------------------------------------------------------------------

VIDEOS = {
    f"v{i}": {"view_count": 1000 * i, "like_count": 50 * i, "comment_count": i, "share_count": 2 * i}
    for i in range(1, 6)
}


def tiktok(api: FakeTikTokVideos) -> TikTokCollector:
    return TikTokCollector(access_token=SecretStr(TIKTOK_TOKEN), base_url=api.url, client=loopback_client())


def test_tiktok_video_query_list_pagination_and_errors() -> None:
    with serve(FakeTikTokVideos(VIDEOS, page_size=2)) as api:
        found = tiktok(api).metrics(["v1", "v2"])
        assert found["v2"].values == {"views": 2000, "likes": 100, "comments": 2, "shares": 4}
        assert found["v2"].posted_at == datetime(2026, 2, 28, 9, tzinfo=UTC)
        posts = tiktok(api).list_posts(since=datetime(2026, 2, 1, tzinfo=UTC))
        assert [p.post_id for p in posts] == ["v1", "v2", "v3", "v4", "v5"]
        assert [r.json().get("cursor") for r in api.requests if r.path == "/v2/video/list/"] == [None, 2, 4]
        api.rate_limit_next = 1
        with pytest.raises(RateLimited):
            tiktok(api).metrics(["v1"])
        api.scopes = set()
        with pytest.raises(MissingPermission, match=r"'video\.list'"):
            tiktok(api).metrics(["v1"])


# --- collecting due snapshots of published posts ----------------------------------------------------


def test_collect_due_snapshots_published_posts_once_per_age_and_reports_a_rate_limit(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe", "ready-safe"])
    pieces = sorted(world.pieces)
    for piece in pieces:
        world.ledger.schedule(piece, "instagram", datetime.now(UTC), publisher="instagram")
    for i, claimed in enumerate(world.ledger.claim_due(now=datetime.now(UTC) + timedelta(minutes=1))):
        world.ledger.mark_published(claimed.id, claimed.claim_token, PublishedPost(f"m{i + 1}"))
    store = AnalyticsStore(world.engine)
    later = datetime.now(UTC) + timedelta(hours=25)
    with serve(FakeGraphInsights(IG_MEDIA)) as api:
        api.rate_limit_next = 1
        limited = collect_due(store, {"instagram": ig(api)}, now=later)
        assert (limited.snapshots, limited.due) == (0, 2) and "instagram" in limited.retry_at
        report = collect_due(store, {"instagram": ig(api)}, now=later, image_for=world.storage.get)
        assert (report.snapshots, report.due) == (2, 2)
        assert collect_due(store, {"instagram": ig(api)}, now=later).due == 0  # nothing twice
        assert collect_due(store, {}, now=later + timedelta(days=2)).skipped_platforms == ["instagram"]
    snapshots = store.observations("mia", "instagram")
    assert {(o.post_id, o.age_hours, o.reach) for o in snapshots} == {("m1", 24, 900), ("m2", 24, 300)}
    first = snapshots[0]
    assert first.piece_id in pieces and first.features["hook_style"] == "tip"
    assert first.features["hashtags"] == ["fitness", "run"] and first.features["tier"] == "safe"
    assert 0.0 < first.features["brightness"] < 1.0 and "sharpness" in first.features  # from the stored image


# --- CSV import -------------------------------------------------------------------------------------

IG_EXPORT = """\
Post ID,Account username,Description,Publish time,Permalink,Views,Reach,Likes,Shares,Comments,Saves
1801,mia,Leg day #gym #legs,03/01/2026 09:00,https://instagram.com/p/1801,1500,900,80,4,6,12
1802,mia,Rest day #recovery,03/02/2026 18:30,https://instagram.com/p/1802,400,300,"1,020",0,1,2
1803,mia,Just posted,03/10/2026 11:45,https://instagram.com/p/1803,10,10,1,0,0,0
"""


def test_csv_import_maps_the_export_columns_and_reimport_never_double_counts(
    store: AnalyticsStore, tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    path.write_text(IG_EXPORT, encoding="utf-8")
    first = import_csv(store, path, platform="instagram", account="mia-history", exported_at=NOW)
    assert (first.rows, first.skipped_too_young, first.counts.snapshots_added) == (3, 1, 2)
    again = import_csv(store, path, platform="instagram", account="mia-history", exported_at=NOW)
    assert (again.counts.posts_added, again.counts.snapshots_added, again.counts.snapshots_replaced) == (
        0,
        0,
        2,
    )
    rows = store.observations("mia-history", "instagram")
    assert [(o.post_id, o.age_hours, o.reach, o.likes) for o in rows] == [
        ("1801", 168, 900, 80),
        ("1802", 168, 300, 1020),
    ]
    assert rows[0].features["hashtags"] == ["gym", "legs"] and rows[0].source == "csv"


def test_csv_import_refuses_wrong_columns_and_bad_dates_before_writing(
    store: AnalyticsStore, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Media,When,Likes\n1,2026-03-01,3\n", encoding="utf-8")
    with pytest.raises(
        InvalidInput, match=r"lacks the column\(s\) 'Post ID' \(or 'post_id'\), 'Publish time'"
    ):
        import_csv(store, wrong, platform="instagram", account="h", exported_at=NOW)
    bad = tmp_path / "bad.csv"
    bad.write_text(IG_EXPORT.replace("03/02/2026 18:30", "yesterday evening"), encoding="utf-8")
    with pytest.raises(InvalidInput, match="row 3: 'Publish time' is not a date: 'yesterday evening'"):
        import_csv(store, bad, platform="instagram", account="h", exported_at=NOW)
    assert store.observations("h", "instagram") == []  # nothing of the file was written
    with pytest.raises(InvalidInput, match="no CSV column mapping for platform 'myspace'"):
        import_csv(store, bad, platform="myspace", account="h", exported_at=NOW)


def test_csv_import_of_an_x_export_with_a_repeated_row_keeps_one_snapshot(
    store: AnalyticsStore, tmp_path: Path
) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "Tweet id,Tweet text,time,impressions,likes,replies,retweets\n"
        "55,morning #run,2026-03-01 09:00 +0000,700,20,2,3\n"
        "55,morning #run,2026-03-01 09:00 +0000,720,21,2,3\n",
        encoding="utf-8",
    )
    result = import_csv(store, path, platform="x", account="mia-x", exported_at=NOW)
    assert (result.duplicate_rows, result.counts.snapshots_added) == (1, 1)
    [row] = store.observations("mia-x", "x")
    assert (row.views, row.likes, row.shares) == (720, 21, 3)
