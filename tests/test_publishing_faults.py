"""Faults of the exactly-once promise: slow platform calls, stale claim holders, rate limits,
changed configuration, crashes around the container, and content changed after moderation."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import update
from support.instagram import TOKEN, USER, FakeGraph, publisher
from support.publishing import T0, Crash, FakeApi, Request, Response, World, make_world, no_sleep, serve
from support.tiktok import TOKEN as TIKTOK_TOKEN
from support.tiktok import FakeTikTok

import contentforge.publishing.ledger as ledger_module
from contentforge.config import PUBLISH_LEASE_MIN_S, Settings
from contentforge.db.engine import make_session_factory
from contentforge.db.models import HookORM, PieceORM, PublicationORM
from contentforge.errors import InvalidInput
from contentforge.publishing import (
    ClaimLost,
    PublishedPost,
    PublisherUnavailable,
    PublishRefused,
    build_row_publisher,
    publish_claimed,
    publisher_name,
)
from contentforge.publishing.http import DEFAULT_TIMEOUT
from contentforge.publishing.instagram import InstagramPublisher
from contentforge.publishing.media import MediaResolver
from contentforge.publishing.outbox import OutboxPublisher
from contentforge.publishing.runner import hold_back
from contentforge.publishing.tiktok import TikTokPublisher

MEDIA_PUBLISH = f"POST /v21.0/{USER}/media_publish"
CREATE_CONTAINER = f"POST /v21.0/{USER}/media"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_url")


def public_world(tmp_path: Path, url: str | None = None, states: list[str] | None = None) -> World:
    return make_world(
        tmp_path, states or ["ready-safe"], url=url, public_base_url="https://cdn.example.com/media"
    )


def outbox(world: World, tmp_path: Path) -> OutboxPublisher:
    return OutboxPublisher(tmp_path / "outbox", MediaResolver(world.storage))


# --- 3. a claim is a lease; every later write is fenced -------------------------------------------


class SlowGraph(FakeGraph):
    """The first media_publish takes as long as the test wants (other requests are served meanwhile)."""

    def __init__(self) -> None:
        super().__init__(["FINISHED"])
        self.entered = threading.Event()
        self.release = threading.Event()

    def handle(self, request: Request) -> Response:
        if request.path.endswith("/media_publish") and not self.entered.is_set():
            self.entered.set()
            self.lock.release()  # serve() holds it around handle; let the other worker through
            try:
                self.release.wait(30)
            finally:
                self.lock.acquire()
        return super().handle(request)


def test_a_second_run_during_a_slow_media_publish_does_not_post_again(
    tmp_path: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = public_world(tmp_path, db_url)
    clock = [datetime.now(UTC)]
    monkeypatch.setattr(ledger_module, "utcnow", lambda: clock[0])
    world.ledger.renew_every_s = 0.02
    world.ledger.schedule(next(iter(world.pieces)), "instagram", T0, publisher="instagram")
    outcomes: dict[str, object] = {}
    with serve(SlowGraph()) as graph:
        [first] = world.ledger.claim_due(now=clock[0], stale_after_s=PUBLISH_LEASE_MIN_S)
        worker = threading.Thread(
            target=lambda: outcomes.update(
                first=publish_claimed(world.ledger, publisher(world, graph), first)
            )
        )
        worker.start()
        assert graph.entered.wait(10)
        for _ in range(10):  # five minutes pass inside media_publish, far beyond the 120 s lease
            clock[0] += timedelta(seconds=30)
            time.sleep(0.1)
        second = world.ledger.claim_due(now=clock[0], stale_after_s=PUBLISH_LEASE_MIN_S)
        for claimed in second:
            outcomes["second"] = publish_claimed(world.ledger, publisher(world, graph), claimed)
        graph.release.set()
        worker.join(30)
    assert second == []  # the lease was renewed while the call ran
    assert (graph.calls[CREATE_CONTAINER], graph.calls[MEDIA_PUBLISH]) == (1, 1)
    row = world.ledger.get(first.id)
    assert (row.status, row.platform_post_id, row.attempts) == ("published", "m1", 1)
    assert outcomes["first"].status == "published"  # type: ignore[attr-defined]


def test_a_stale_claim_holder_cannot_write_anything(tmp_path: Path, db_url: str | None) -> None:
    world = make_world(tmp_path, ["ready-safe"], url=db_url)
    pub_id, _ = world.ledger.schedule(next(iter(world.pieces)), "instagram", T0, publisher="outbox")
    [old] = world.ledger.claim_due(now=T0)
    # Its worker stalled past the lease: the next run takes the row over.
    [new] = world.ledger.claim_due(now=datetime.now(UTC) + timedelta(hours=1))
    assert new.claim_token != old.claim_token
    token = old.claim_token
    writes = {
        "record_container": lambda: world.ledger.record_container(pub_id, token, "c-old"),
        "mark_published": lambda: world.ledger.mark_published(pub_id, token, PublishedPost("m-old")),
        "mark_failed": lambda: world.ledger.mark_failed(pub_id, token, "old worker"),
        "reschedule": lambda: world.ledger.reschedule(pub_id, token, T0, "old worker"),
        "note_error": lambda: world.ledger.note_error(pub_id, token, "old worker"),
        "touch": lambda: world.ledger.touch(pub_id, token),
        "begin_prepare": lambda: world.ledger.begin_prepare(pub_id, token),
    }
    for name, write in writes.items():
        with pytest.raises(ClaimLost, match="no longer held"):
            write()
        row = world.ledger.get(pub_id)
        assert (row.status, row.claim_token, row.platform_post_id, row.last_error) == (
            "publishing", new.claim_token, None, None,
        ), name  # fmt: skip
    # The stale worker's whole publish is a no-op: no file, outcome "lost".
    outcome = publish_claimed(world.ledger, outbox(world, tmp_path), old)
    assert outcome.status == "lost" and not (tmp_path / "outbox").exists()
    # The current holder still finishes normally.
    assert publish_claimed(world.ledger, outbox(world, tmp_path), new).status == "published"


def test_a_lease_shorter_than_a_platform_call_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    longest_call = (
        DEFAULT_TIMEOUT.connect + DEFAULT_TIMEOUT.write + DEFAULT_TIMEOUT.read + DEFAULT_TIMEOUT.pool
    )
    assert longest_call < PUBLISH_LEASE_MIN_S
    for value in ("0", str(PUBLISH_LEASE_MIN_S - 1)):
        monkeypatch.setenv("CONTENTFORGE_PUBLISH_STALE_AFTER_S", value)
        with pytest.raises(ValidationError, match="CONTENTFORGE_PUBLISH_STALE_AFTER_S"):
            Settings()
    monkeypatch.setenv("CONTENTFORGE_PUBLISH_STALE_AFTER_S", str(PUBLISH_LEASE_MIN_S))
    assert Settings().publish_stale_after_s == PUBLISH_LEASE_MIN_S
    world = make_world(tmp_path, ["ready-safe"])
    with pytest.raises(InvalidInput, match="CONTENTFORGE_PUBLISH_STALE_AFTER_S=0"):
        world.ledger.claim_due(now=T0, stale_after_s=0)


# --- 5. rate limits wait for the platform's retry time ---------------------------------------------


class LimitedGraph(FakeGraph):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(["FINISHED"])
        self.headers = headers

    def handle(self, request: Request) -> Response:
        if request.path.endswith("/media_publish"):
            error = {"message": "Application request limit reached", "code": 4}
            return 429, self.headers, {"error": error}
        return super().handle(request)


@pytest.mark.parametrize(
    ("headers", "wait_s"),
    [
        ({"Retry-After": "120"}, 120),
        ({"X-Business-Use-Case-Usage": json.dumps({"1": [{"estimated_time_to_regain_access": 7}]})}, 420),
        ({}, 3600),  # no hint: the configured default
    ],
)
def test_instagram_rate_limit_waits_for_the_platforms_retry_time(
    tmp_path: Path, headers: dict[str, str], wait_s: int
) -> None:
    world = public_world(tmp_path)
    world.ledger.schedule(next(iter(world.pieces)), "instagram", T0, publisher="instagram")
    [claimed] = world.ledger.claim_due(now=T0)
    with serve(LimitedGraph(headers)) as api:
        outcome = publish_claimed(world.ledger, publisher(world, api), claimed)
    assert outcome.status == "deferred"
    row = world.ledger.get(claimed.id)
    assert row.status == "scheduled" and row.scheduled_for is not None and row.claim_token is None
    assert abs((row.scheduled_for - datetime.now(UTC)).total_seconds() - wait_s) < 10


# --- 6. a row keeps the publisher it was scheduled with --------------------------------------------


def test_a_row_scheduled_for_the_outbox_is_not_posted_via_instagram_after_a_config_change(
    tmp_path: Path, graph: FakeGraph
) -> None:
    world = public_world(tmp_path)
    before = Settings(data_dir=tmp_path)
    world.ledger.schedule(
        next(iter(world.pieces)), "instagram", T0, publisher=publisher_name(before, "instagram")
    )
    [claimed] = world.ledger.claim_due(now=T0)
    assert claimed.publisher == "outbox"
    after = Settings(
        data_dir=tmp_path, publisher_instagram="api", instagram_user_id=USER,
        instagram_access_token=SecretStr(TOKEN), instagram_graph_url=f"{graph.url}/v21.0",
    )  # fmt: skip
    with pytest.raises(PublisherUnavailable) as info:
        build_row_publisher(after, claimed, storage=world.storage)
    assert "CONTENTFORGE_PUBLISHER_INSTAGRAM=outbox" in str(info.value)
    outcome = hold_back(world.ledger, claimed, str(info.value))
    row = world.ledger.get(claimed.id)
    assert outcome.status == "deferred" and row.status == "scheduled"
    assert (row.last_error or "").startswith("held: scheduled with the 'outbox' publisher")
    assert sum(graph.calls.values()) == 0
    # Back on the configuration it was scheduled with, it is built and goes out.
    [again] = world.ledger.claim_due(now=datetime.now(UTC) + timedelta(hours=2))
    built = build_row_publisher(before, again, storage=world.storage)
    assert isinstance(built, OutboxPublisher)
    assert publish_claimed(world.ledger, built, again).status == "published"
    # A row whose own publisher cannot be built any more is held too, naming the missing setting.
    missing = Settings(data_dir=tmp_path, publisher_instagram="api")
    with pytest.raises(PublisherUnavailable, match="CONTENTFORGE_INSTAGRAM_USER_ID"):
        build_row_publisher(missing, dataclasses.replace(again, publisher="instagram"))


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with serve(FakeGraph(["FINISHED"])) as api:
        yield api


# --- 7. crashes around the container ----------------------------------------------------------------


class CrashesAfterPublish(InstagramPublisher):
    def publish(self, publication, container_id):  # type: ignore[no-untyped-def]
        super().publish(publication, container_id)
        raise Crash()


class CrashesInPrepare(InstagramPublisher):
    def prepare(self, publication):  # type: ignore[no-untyped-def]
        super().prepare(publication)
        raise Crash()  # the container exists, its id never reached the ledger


def graph_kwargs(world: World, api: FakeApi) -> dict[str, object]:
    return {
        "user_id": USER, "access_token": SecretStr(TOKEN), "media": MediaResolver(world.storage),
        "base_url": f"{api.url}/v21.0", "poll_interval_s": 0.0, "sleep": no_sleep,
    }  # fmt: skip


def test_resuming_from_a_published_container_records_the_media_id(tmp_path: Path, graph: FakeGraph) -> None:
    world = public_world(tmp_path, states=["ready-safe", "ready-safe"])
    first, second = sorted(world.pieces)
    # Another post of the account with a different caption must not be taken for ours.
    world.ledger.schedule(second, "instagram", T0, publisher="instagram")
    [other] = world.ledger.claim_due(now=T0)
    assert publish_claimed(world.ledger, publisher(world, graph), other).post_id == "m1"
    world.ledger.schedule(first, "instagram", T0, publisher="instagram")
    [claimed] = world.ledger.claim_due(now=T0)
    with pytest.raises(Crash):
        publish_claimed(world.ledger, CrashesAfterPublish(**graph_kwargs(world, graph)), claimed)  # type: ignore[arg-type]
    [resumed] = world.ledger.claim_due(now=datetime.now(UTC) + timedelta(hours=1))
    outcome = publish_claimed(world.ledger, publisher(world, graph), resumed)
    row = world.ledger.get(resumed.id)
    assert (outcome.status, row.platform_post_id, row.post_url) == (
        "published", "m2", "https://www.instagram.com/p/m2/",
    )  # fmt: skip
    assert graph.calls[MEDIA_PUBLISH] == 2  # one per piece, none again on resume


def test_a_crash_inside_prepare_is_visible_and_never_posts_twice(tmp_path: Path, graph: FakeGraph) -> None:
    world = public_world(tmp_path)
    world.ledger.schedule(next(iter(world.pieces)), "instagram", T0, publisher="instagram")
    [claimed] = world.ledger.claim_due(now=T0)
    with pytest.raises(Crash):
        publish_claimed(world.ledger, CrashesInPrepare(**graph_kwargs(world, graph)), claimed)  # type: ignore[arg-type]
    row = world.ledger.get(claimed.id)
    assert row.platform_container_id is None and (row.detail or {})["prepare_pending"] is True
    [resumed] = world.ledger.claim_due(now=datetime.now(UTC) + timedelta(hours=1))
    assert publish_claimed(world.ledger, publisher(world, graph), resumed).status == "published"
    row = world.ledger.get(claimed.id)
    # Instagram allows no lookup of the lost container: a second one is made (it expires unposted
    # after 24 h), and the row says two prepares started.
    assert (graph.calls[CREATE_CONTAINER], graph.calls[MEDIA_PUBLISH]) == (2, 1)
    assert (row.detail or {})["prepares_started"] == 2 and row.platform_container_id == "c2"


def test_a_tiktok_init_whose_id_was_lost_is_not_repeated(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"], public_base_url="https://cdn.example.com")
    world.ledger.schedule(next(iter(world.pieces)), "tiktok", T0, publisher="tiktok")
    [claimed] = world.ledger.claim_due(now=T0)

    class DiesAfterInit(TikTokPublisher):
        def prepare(self, publication):  # type: ignore[no-untyped-def]
            super().prepare(publication)
            raise Crash()

    with serve(FakeTikTok()) as api:
        kwargs = {"access_token": SecretStr(TIKTOK_TOKEN), "media": MediaResolver(world.storage),
                  "base_url": api.url, "poll_interval_s": 0.0, "sleep": no_sleep}  # fmt: skip
        with pytest.raises(Crash):
            publish_claimed(world.ledger, DiesAfterInit(**kwargs), claimed)  # type: ignore[arg-type]
        [resumed] = world.ledger.claim_due(now=datetime.now(UTC) + timedelta(hours=1))
        outcome = publish_claimed(world.ledger, TikTokPublisher(**kwargs), resumed)  # type: ignore[arg-type]
    assert outcome.status == "failed" and "may already be live" in (outcome.error or "")
    assert len(api.inits) == 1  # a direct post is never initialised twice


# --- 1. nothing unmoderated or changed after moderation is published --------------------------------


def change_hook(world: World, piece_id: str) -> None:
    """A hand edit of one hook in the database (the repository would also send the piece back to
    moderation; this is the path around it)."""
    with make_session_factory(world.engine)() as session, session.begin():
        session.execute(
            update(HookORM)
            .where(HookORM.piece_id == piece_id, HookORM.platform == "x")
            .values(text="Edited after review")
        )


def test_a_hook_changed_after_moderation_is_not_published(tmp_path: Path, db_url: str | None) -> None:
    world = make_world(tmp_path, ["ready-safe"] * 3, url=db_url)
    a, b, c = sorted(world.pieces)
    ids = {pid: world.ledger.schedule(pid, "instagram", T0, publisher="outbox")[0] for pid in (a, b, c)}
    change_hook(world, a)  # any hook of the piece, even another platform's, was part of the verdict
    claimed = world.ledger.claim_due(now=T0)
    assert sorted(p.piece_id for p in claimed) == [b, c]
    row = world.ledger.get(ids[a])
    assert row.status == "failed" and "content changed after moderation; moderate again" in (
        row.last_error or ""
    )
    # Changed between the claim and the platform call: checked again right before it.
    change_hook(world, b)
    outcomes = {p.piece_id: publish_claimed(world.ledger, outbox(world, tmp_path), p) for p in claimed}
    assert outcomes[b].status == "failed" and "moderate again" in (outcomes[b].error or "")
    assert outcomes[c].status == "published"
    assert sorted(p.name for p in (tmp_path / "outbox" / "instagram").glob("*.json")) == [f"{c}.json"]
    # Scheduling refuses a changed piece and one whose verdict is bound to nothing.
    with pytest.raises(PublishRefused, match="content changed after moderation"):
        world.ledger.schedule(a, "x", T0, publisher="outbox")
    with make_session_factory(world.engine)() as session, session.begin():
        session.execute(update(PieceORM).where(PieceORM.id == c).values(moderated_hash=None))
    with pytest.raises(PublishRefused, match="no moderation verdict bound to its content"):
        world.ledger.schedule(c, "x", T0, publisher="outbox")


def test_captions_no_moderation_judged_are_judged_before_scheduling(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"] * 2, hook_platforms=("instagram",))
    a, b = sorted(world.pieces)
    world.ledger.caption_writer = lambda piece, persona, platform: ("Send nudes for the full plan", "alt")
    with pytest.raises(PublishRefused, match="judged 'rejected'"):
        world.ledger.schedule(a, "x", T0, publisher="outbox")
    with pytest.raises(PublishRefused, match="judged 'rejected'"):
        world.ledger.schedule(a, "instagram", T0, publisher="outbox", caption="go die, lazy people")
    # A harmless written caption is judged, scheduled and bound to the row…
    world.ledger.caption_writer = lambda piece, persona, platform: ("Leg day, done right.", "alt")
    pub_id, _ = world.ledger.schedule(b, "x", T0, publisher="outbox")
    row = world.ledger.get(pub_id)
    assert row.caption == "Leg day, done right." and (row.detail or {})["caption_verdict"] == "safe"
    # …so a caption swapped in afterwards is not published.
    with make_session_factory(world.engine)() as session, session.begin():
        session.execute(update(PublicationORM).where(PublicationORM.id == pub_id).values(caption="Buy now"))
    assert world.ledger.claim_due(now=T0) == []
    assert "not a text moderation judged" in (world.ledger.get(pub_id).last_error or "")
