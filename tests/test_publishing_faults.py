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

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from support.instagram import TOKEN, USER, FakeGraph, publisher
from support.publishing import (
    T0,
    Crash,
    FakeApi,
    Request,
    Response,
    World,
    make_world,
    no_sleep,
    png_bytes,
    serve,
)
from support.tiktok import TOKEN as TIKTOK_TOKEN
from support.tiktok import FakeTikTok

import contentforge.publishing.ledger as ledger_module
from contentforge.config import PUBLISH_LEASE_MIN_S, Settings
from contentforge.db.engine import make_session_factory
from contentforge.db.models import HookORM, PieceORM, PublicationORM
from contentforge.errors import InvalidInput
from contentforge.publishing import (
    ClaimLost,
    PermanentFailure,
    PublicationLedger,
    PublishedPost,
    PublisherUnavailable,
    PublishRefused,
    TransientError,
    build_row_publisher,
    give_up,
    publish_claimed,
    publisher_name,
)
from contentforge.publishing.http import DEFAULT_TIMEOUT
from contentforge.publishing.instagram import InstagramPublisher
from contentforge.publishing.media import MediaResolver
from contentforge.publishing.outbox import OutboxPublisher
from contentforge.publishing.runner import hold_back
from contentforge.publishing.tiktok import TikTokPublisher
from contentforge.publishing.x import XPublisher

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


# --- 8. a post that went out is never posted again; the image posted is the image judged ---------


class FakeTweets(FakeApi):
    """X's media upload and post creation; ``accept_then_stall_s`` stalls after accepting a post."""

    def __init__(self, accept_then_stall_s: float = 0.0) -> None:
        super().__init__()
        self.accept_then_stall_s = accept_then_stall_s
        self.posts: list[str] = []

    def handle(self, request: Request) -> Response:
        if request.path == "/2/media/upload":
            return 200, {}, {"data": {"id": "4242"}}
        if request.path == "/2/media/metadata":
            return 200, {}, {"data": {"associated_metadata": True}}
        if request.path == "/2/tweets":
            self.posts.append(request.json()["text"])
            time.sleep(self.accept_then_stall_s)  # X took the post; its answer is late
            return 201, {}, {"data": {"id": str(1000 + len(self.posts))}}
        return 404, {}, {"title": "Not Found"}


def x_publisher(world: World, api: FakeApi, client: httpx.Client | None = None) -> XPublisher:
    return XPublisher(
        access_token=SecretStr("x-token-0123456789"), media=MediaResolver(world.storage), base_url=api.url,
        client=client,
    )  # fmt: skip


def fails_once_to_record(monkeypatch: pytest.MonkeyPatch, ledger: PublicationLedger) -> None:
    """The post is made, then the database write recording it fails (once)."""
    record = ledger.mark_published

    def broken(*args: object, **kwargs: object) -> object:
        monkeypatch.setattr(ledger, "mark_published", record)
        raise OperationalError("UPDATE publications", {}, Exception("database is locked"))

    monkeypatch.setattr(ledger, "mark_published", broken)


NOT_AGAIN = "a previous attempt may already have posted it on x"


def test_an_x_post_that_was_not_recorded_is_not_posted_again(
    tmp_path: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(tmp_path, ["ready-safe"], url=db_url)
    world.ledger.schedule(next(iter(world.pieces)), "x", T0, publisher="x")
    [claimed] = world.ledger.claim_due(now=T0)
    fails_once_to_record(monkeypatch, world.ledger)
    with serve(FakeTweets()) as api:
        with pytest.raises(OperationalError):
            publish_claimed(world.ledger, x_publisher(world, api), claimed)
        # The task failed: release_publication gives the row back for a later run.
        assert give_up(world.ledger, claimed, "OperationalError", max_attempts=5).status == "deferred"
        [again] = world.ledger.claim_due(now=datetime.now(UTC) + timedelta(days=1))
        outcome = publish_claimed(world.ledger, x_publisher(world, api), again)
    assert len(api.posts) == 1
    row = world.ledger.get(claimed.id)
    assert outcome.status == row.status == "failed"
    assert NOT_AGAIN in (row.last_error or "") and "check the account" in (row.last_error or "")
    assert "\n" not in (row.last_error or "")


def test_an_x_post_whose_answer_timed_out_is_not_posted_again(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"])
    world.ledger.schedule(next(iter(world.pieces)), "x", T0, publisher="x")
    [claimed] = world.ledger.claim_due(now=T0)
    with serve(FakeTweets(accept_then_stall_s=1.0)) as api, httpx.Client(timeout=0.3) as client:
        with pytest.raises(TransientError, match="ReadTimeout"):
            publish_claimed(world.ledger, x_publisher(world, api, client), claimed)
        # Prefect retries the task: it re-reads the row as the claim holder.
        retry = world.ledger.claimed(claimed.id, str(claimed.claim_token))
        outcome = publish_claimed(world.ledger, x_publisher(world, api, client), retry)
        assert outcome.status == "failed" and NOT_AGAIN in (outcome.error or "")
        assert len(api.posts) == 1
    assert api.calls["POST /2/tweets"] == 1


def test_an_instagram_post_that_was_not_recorded_is_settled_by_its_container(
    tmp_path: Path, graph: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = public_world(tmp_path)
    world.ledger.schedule(next(iter(world.pieces)), "instagram", T0, publisher="instagram")
    [claimed] = world.ledger.claim_due(now=T0)
    fails_once_to_record(monkeypatch, world.ledger)
    with pytest.raises(OperationalError):
        publish_claimed(world.ledger, publisher(world, graph), claimed)
    assert (world.ledger.get(claimed.id).detail or {})["publish_pending"] is True
    give_up(world.ledger, claimed, "OperationalError", max_attempts=5)
    [again] = world.ledger.claim_due(now=datetime.now(UTC) + timedelta(days=1))
    outcome = publish_claimed(world.ledger, publisher(world, graph), again)
    row = world.ledger.get(claimed.id)
    assert (outcome.status, row.platform_post_id) == ("published", "m1")
    assert (row.detail or {})["publish_pending"] is False
    assert graph.calls[MEDIA_PUBLISH] == 1  # the container said PUBLISHED: no second post


def test_an_image_replaced_after_moderation_is_not_published(tmp_path: Path, db_url: str | None) -> None:
    world = public_world(tmp_path, db_url)
    piece = next(iter(world.pieces))
    world.ledger.schedule(piece, "instagram", T0, publisher="outbox")
    # A stalled run (or a hand edit) writes another image under the judged one's key.
    world.storage.put(f"content/mia/{piece}.png", png_bytes((1, 200, 1)), "image/png")
    [claimed] = world.ledger.claim_due(now=T0)
    differs = "stored image differs from the one moderation judged; moderate it again"
    with pytest.raises(PermanentFailure, match=differs):  # the rendition a platform fetches, too
        MediaResolver(world.storage).public_rendition_url(claimed)
    outcome = publish_claimed(world.ledger, outbox(world, tmp_path), claimed)
    row = world.ledger.get(claimed.id)
    assert outcome.status == row.status == "failed" and differs in (row.last_error or "")
    assert not list((tmp_path / "outbox").rglob("*.json"))
