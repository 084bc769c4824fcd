"""Publishing posts the chosen cover (issue 15, item 7): a variation's image, bound when scheduled.

``analytics covers`` records per piece and platform a cover, which may be one of the piece's seed
variations. The publication binds it when it is scheduled, only when that image's own verdict
allows the platform (else the piece's own image, with the reason), and never changes it later: a
cover chosen again, a retry or a rerun all post the bytes bound once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import update
from support.publishing import T0, Crash, World, make_world, serve
from support.x import TOKEN, FakeX

from contentforge.analytics.cover import CoverChoice, CoverScore, record_covers
from contentforge.db.analytics import AnalyticsStore
from contentforge.db.engine import make_session_factory
from contentforge.db.models import PieceORM
from contentforge.domain.models import ModerationVerdict, Verdict
from contentforge.publishing import publish_claimed
from contentforge.publishing.cover_binding import cover_note
from contentforge.publishing.ledger import PublishRefused
from contentforge.publishing.media import MediaResolver
from contentforge.publishing.outbox import OutboxPublisher
from contentforge.publishing.x import XPublisher

PARENT, COVER, RESTRICTED, OTHER = "p00", "p01", "p02", "p03"


def build_world(tmp_path: Path, url: str | None = None) -> World:
    """p00 with three variations: p01 and p03 safe, p02 restricted (no platform takes it unasked)."""
    world = make_world(
        tmp_path,
        ["ready-safe", "ready-safe", "ready-restricted", "ready-safe"],
        url=url,
        public_base_url="https://cdn.example.test/media",
    )
    with make_session_factory(world.engine)() as session, session.begin():
        session.execute(
            update(PieceORM).where(PieceORM.id.in_([COVER, RESTRICTED, OTHER])).values(parent_piece_id=PARENT)
        )
    return world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_db_world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    """The same world on SQLite and on PostgreSQL (the bound image lives in a JSON column)."""
    return build_world(tmp_path, None if request.param == "sqlite" else request.getfixturevalue("pg_url"))


def choose_cover(world: World, platform: str, chosen: str) -> None:
    """What ``analytics covers`` records: the chosen candidate first, every candidate scored."""
    candidates = [CoverScore(chosen, 1.2, "closeness to the top-performing posts' image features", {})]
    candidates += [CoverScore(p, 0.5, candidates[0].method, {}) for p in (PARENT, OTHER) if p != chosen]
    record_covers(AnalyticsStore(world.engine), [CoverChoice(PARENT, platform, candidates)])


def image_of(world: World, piece_id: str) -> bytes:
    return world.storage.get(f"content/mia/{piece_id}.png")


def x_publisher(world: World, url: str) -> XPublisher:
    return XPublisher(access_token=SecretStr(TOKEN), media=MediaResolver(world.storage), base_url=url)


def test_the_chosen_variation_is_posted_and_the_publication_says_why(world: World) -> None:
    choose_cover(world, "x", COVER)
    choose_cover(world, "instagram", COVER)
    publication_id, _ = world.ledger.schedule(PARENT, "x", T0, publisher="x")
    media = (world.ledger.get(publication_id).detail or {})["media"]
    assert (media["piece_id"], media["source"], media["verdict"]) == (COVER, "cover", "safe")
    assert media["storage_key"] == f"content/mia/{COVER}.png" and "cover chosen for x" in media["why"]
    assert (cover_note(world.ledger.get(publication_id).detail) or "").startswith(
        f"posts the image of variation {COVER}"
    )
    assert image_of(world, COVER) != image_of(world, PARENT)

    [claimed] = world.ledger.claim_due(now=T0)
    with serve(fake := FakeX()) as api:
        outcome = publish_claimed(world.ledger, x_publisher(world, api.url), claimed)
    assert outcome.status == "published"
    assert list(fake.media.values()) == [image_of(world, COVER)]  # the platform received the cover's bytes
    assert fake.posts[0]["text"] == claimed.caption  # the caption moderation judged with the piece
    # Metrics collection measures the image the post carried, so the model learns from the cover.
    [due] = AnalyticsStore(world.engine).due_for_collection(datetime.now(UTC) + timedelta(hours=2), [1])
    assert (due.piece_id, due.storage_key) == (PARENT, f"content/mia/{COVER}.png")

    # A platform that fetches a rendition gets the cover's, stored under the cover's own piece.
    world.ledger.schedule(PARENT, "instagram", T0, publisher="instagram")
    [on_instagram] = world.ledger.claim_due(now=T0)
    url = MediaResolver(world.storage).public_rendition_url(on_instagram)
    assert url.endswith(f"/content/mia/{COVER}.instagram.jpg")


def test_a_cover_the_platform_does_not_accept_is_not_used(world: World, tmp_path: Path) -> None:
    choose_cover(world, "instagram", RESTRICTED)
    publication_id, _ = world.ledger.schedule(PARENT, "instagram", T0, publisher="outbox")
    media = (world.ledger.get(publication_id).detail or {})["media"]
    assert (media["piece_id"], media["source"], media["declined_cover"]) == (PARENT, "own", RESTRICTED)
    assert "verdict 'restricted' is not accepted on instagram" in media["why"]
    assert (cover_note(world.ledger.get(publication_id).detail) or "").startswith("posts its own image: ")

    [claimed] = world.ledger.claim_due(now=T0)
    outbox = OutboxPublisher(tmp_path / "outbox", MediaResolver(world.storage))
    assert publish_claimed(world.ledger, outbox, claimed).status == "published"
    assert (tmp_path / "outbox" / "instagram" / f"{PARENT}.png").read_bytes() == image_of(world, PARENT)
    record = json.loads((tmp_path / "outbox" / "instagram" / f"{PARENT}.json").read_text())
    assert record["image_piece_id"] == PARENT


def test_a_cover_chosen_again_after_scheduling_changes_nothing_scheduled(
    any_db_world: World, tmp_path: Path
) -> None:
    world = any_db_world
    choose_cover(world, "instagram", COVER)
    publication_id, _ = world.ledger.schedule(PARENT, "instagram", T0, publisher="outbox")
    bound = world.ledger.get(publication_id)
    choose_cover(world, "instagram", OTHER)  # analytics covers runs again and prefers another image
    assert world.ledger.schedule(PARENT, "instagram", T0, publisher="outbox") == (publication_id, False)
    assert world.ledger.get(publication_id).detail == bound.detail
    # The bound variation is not scheduled as a post of its own there: the image would go out twice.
    with pytest.raises(PublishRefused, match=f"cover of piece {PARENT}'s publication"):
        world.ledger.schedule(COVER, "instagram", T0, publisher="outbox")

    [claimed] = world.ledger.claim_due(now=T0)
    outbox = OutboxPublisher(tmp_path / "outbox", MediaResolver(world.storage))
    assert publish_claimed(world.ledger, outbox, claimed).status == "published"
    assert (tmp_path / "outbox" / "instagram" / f"{PARENT}.png").read_bytes() == image_of(world, COVER)


def test_a_variation_with_its_own_post_is_not_used_as_a_cover(world: World) -> None:
    world.ledger.schedule(COVER, "x", T0, publisher="x")
    choose_cover(world, "x", COVER)
    publication_id, _ = world.ledger.schedule(PARENT, "x", T0, publisher="x")
    media = (world.ledger.get(publication_id).detail or {})["media"]
    assert (media["piece_id"], media["declined_cover"]) == (PARENT, COVER)
    assert "scheduled as a post of its own on x" in media["why"]


def test_a_crash_before_the_post_resumes_and_posts_the_cover_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    choose_cover(world, "x", COVER)
    world.ledger.schedule(PARENT, "x", T0, publisher="x")
    [claimed] = world.ledger.claim_due(now=T0)

    def dies(publication_id: int, claim_token: str | None) -> None:
        raise Crash()  # the cover is uploaded and its id stored; the process dies before posting

    with serve(fake := FakeX()) as api:
        with monkeypatch.context() as patched:
            patched.setattr(world.ledger, "begin_publish", dies)
            with pytest.raises(Crash):
                publish_claimed(world.ledger, x_publisher(world, api.url), claimed)
        choose_cover(world, "x", OTHER)  # re-chosen meanwhile: the resumed run still posts what was bound
        later = datetime.now(UTC) + timedelta(hours=1)
        [resumed] = world.ledger.claim_due(now=later, stale_after_s=600)
        assert publish_claimed(world.ledger, x_publisher(world, api.url), resumed).status == "published"
        assert world.ledger.claim_due(now=later + timedelta(hours=1), stale_after_s=600) == []
    assert (api.calls["POST /2/media/upload"], len(fake.posts)) == (1, 1)
    assert list(fake.media.values()) == [image_of(world, COVER)]


def test_a_cover_rejected_after_scheduling_fails_the_publication(world: World) -> None:
    choose_cover(world, "x", COVER)
    publication_id, _ = world.ledger.schedule(PARENT, "x", T0, publisher="x")
    world.repo.save_verdict(COVER, ModerationVerdict(verdict=Verdict.rejected, scores={"sexual": 0.9}))
    assert world.ledger.claim_due(now=T0) == []  # not posted, and not swapped for other bytes either
    row = world.ledger.get(publication_id)
    assert row.status == "failed" and f"its cover image (piece {COVER})" in (row.last_error or "")


def test_a_piece_and_its_cover_scheduled_at_once_never_post_one_image_twice(
    any_db_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each side checks the other's rows, then inserts its own: without a lock on the family's row both
    pass on PostgreSQL. The parent's binding is held open while the variation is scheduled."""
    import threading

    import contentforge.publishing.ledger as ledger_module

    world = any_db_world
    choose_cover(world, "x", COVER)
    binding, variation_tried = threading.Event(), threading.Event()
    real_bind = ledger_module.bind_image

    def slow_bind(*args: object, **kwargs: object) -> dict[str, object]:
        image = real_bind(*args, **kwargs)  # type: ignore[arg-type]
        binding.set()
        variation_tried.wait(3)  # with the lock, the variation waits for this transaction instead
        return image

    monkeypatch.setattr(ledger_module, "bind_image", slow_bind)
    outcomes: dict[str, object] = {}

    def schedule_parent() -> None:
        outcomes["parent"] = world.ledger.schedule(PARENT, "x", T0, publisher="x")

    parent = threading.Thread(target=schedule_parent)
    parent.start()
    assert binding.wait(30)
    monkeypatch.setattr(ledger_module, "bind_image", real_bind)

    def schedule_variation() -> None:
        try:
            outcomes["variation"] = world.ledger.schedule(COVER, "x", T0, publisher="x")
        except PublishRefused as refused:
            outcomes["variation"] = refused

    variation = threading.Thread(target=schedule_variation)
    variation.start()
    variation.join(1.0)
    variation_tried.set()
    parent.join(30)
    variation.join(30)
    parent_media = (world.ledger.get(outcomes["parent"][0]).detail or {})["media"]  # type: ignore[index]
    posts_of_cover = int(parent_media["piece_id"] == COVER) + int(
        not isinstance(outcomes["variation"], PublishRefused)
    )
    assert posts_of_cover == 1, (parent_media, outcomes["variation"])
