"""The Instagram Graph API publisher against a local server speaking the documented publishing flow."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from support.instagram import TOKEN, USER, FakeGraph, publisher
from support.publishing import T0, Crash, World, make_world, no_sleep, serve

from contentforge.images.provenance import DIGITAL_SOURCE_TYPE, read_provenance
from contentforge.publishing import publish_claimed
from contentforge.publishing.instagram import InstagramPublisher
from contentforge.publishing.media import MediaResolver


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path, ["ready-safe", "ready-safe"], public_base_url="https://cdn.example.com/media")


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with serve(FakeGraph(["IN_PROGRESS", "IN_PROGRESS", "FINISHED"])) as api:
        yield api


def schedule_and_claim(world: World, piece_index: int = 0) -> list:  # type: ignore[type-arg]
    piece = sorted(world.pieces)[piece_index]
    world.ledger.schedule(piece, "instagram", T0, publisher="instagram")
    return world.ledger.claim_due(now=T0 + timedelta(minutes=1))


def test_publishes_through_container_polling_and_media_publish(world: World, graph: FakeGraph) -> None:
    [claimed] = schedule_and_claim(world)
    outcome = publish_claimed(
        world.ledger, publisher(world, graph, ai_disclosure_param="ai_generated"), claimed
    )
    assert (outcome.status, outcome.post_id, outcome.url) == (
        "published",
        "m1",
        "https://www.instagram.com/p/m1/",
    )
    row = world.ledger.get(claimed.id)
    assert (row.status, row.platform_container_id, row.platform_post_id) == ("published", "c1", "m1")
    assert graph.calls[f"POST /v21.0/{USER}/media"] == 1
    assert graph.calls[f"POST /v21.0/{USER}/media_publish"] == 1
    assert graph.calls["GET /v21.0/c1"] == 3  # IN_PROGRESS, IN_PROGRESS, FINISHED
    create = next(r for r in graph.requests if r.path.endswith("/media") and r.method == "POST").form()
    # Instagram's JPEG rendition was stored next to the PNG, with provenance, and offered by URL.
    rendition = f"content/mia/{claimed.piece_id}.instagram.jpg"
    assert create["image_url"] == f"https://cdn.example.com/media/{rendition}"
    assert world.storage.get(rendition)[:2] == b"\xff\xd8"
    assert read_provenance(world.storage.get(rendition)).digital_source_type == DIGITAL_SOURCE_TYPE
    assert create["caption"] == claimed.caption and create["alt_text"].startswith("AI-generated image")
    assert create["ai_generated"] == "true"
    assert all(
        TOKEN not in r.path and TOKEN not in str(r.query) and TOKEN.encode() not in r.body
        for r in graph.requests
    )


@pytest.mark.parametrize("status", ["ERROR", "EXPIRED"])
def test_a_container_in_error_or_expired_fails_the_publication(world: World, status: str) -> None:
    with serve(FakeGraph(["IN_PROGRESS", status])) as api:
        [claimed] = schedule_and_claim(world)
        outcome = publish_claimed(world.ledger, publisher(world, api), claimed)
    assert outcome.status == "failed"
    row = world.ledger.get(claimed.id)
    assert row.status == "failed" and f"is {status}" in (row.last_error or "")
    assert api.calls[f"POST /v21.0/{USER}/media_publish"] == 0


def test_quota_reached_keeps_the_publication_scheduled_for_later(world: World) -> None:
    with serve(FakeGraph(["FINISHED"], quota_usage=50)) as api:
        [claimed] = schedule_and_claim(world)
        outcome = publish_claimed(world.ledger, publisher(world, api), claimed)
    assert outcome.status == "deferred"
    row = world.ledger.get(claimed.id)
    assert row.status == "scheduled" and "50/50" in (row.last_error or "")
    assert row.scheduled_for is not None and row.scheduled_for > datetime.now(UTC) + timedelta(minutes=30)
    assert api.calls[f"POST /v21.0/{USER}/media"] == 0  # no container is wasted while the quota is used up


def test_polling_is_bounded(world: World) -> None:
    with serve(FakeGraph(["IN_PROGRESS"])) as api:
        [claimed] = schedule_and_claim(world)
        with pytest.raises(Exception, match="still IN_PROGRESS after 5 checks"):
            publish_claimed(world.ledger, publisher(world, api), claimed)
    assert api.calls["GET /v21.0/c1"] == 5
    row = world.ledger.get(claimed.id)
    # The container id is kept for the next run; the row waits for the caller's retry policy.
    assert (row.status, row.platform_container_id) == ("publishing", "c1")


def test_a_crash_between_container_and_publish_then_a_rerun_posts_exactly_once(
    world: World, graph: FakeGraph
) -> None:
    class CrashesBeforePublish(InstagramPublisher):
        def publish(self, publication, container_id):  # type: ignore[no-untyped-def]
            raise Crash()

    [claimed] = schedule_and_claim(world)
    crashing = CrashesBeforePublish(
        user_id=USER, access_token=SecretStr(TOKEN), media=MediaResolver(world.storage),
        base_url=f"{graph.url}/v21.0", poll_interval_s=0.0, sleep=no_sleep,
    )  # fmt: skip
    with pytest.raises(Crash):
        publish_claimed(world.ledger, crashing, claimed)
    assert world.ledger.get(claimed.id).platform_container_id == "c1"
    assert graph.calls[f"POST /v21.0/{USER}/media_publish"] == 0

    # Rerun: the stale row is reclaimed and resumed with its stored container.
    [resumed] = world.ledger.claim_due(now=datetime.now(UTC) + timedelta(hours=1), stale_after_s=600)
    assert resumed.container_id == "c1"
    outcome = publish_claimed(world.ledger, publisher(world, graph), resumed)
    assert outcome.status == "published"
    assert graph.calls[f"POST /v21.0/{USER}/media"] == 1
    assert graph.calls[f"POST /v21.0/{USER}/media_publish"] == 1

    # A crash *after* media_publish succeeded (before the ledger heard of it) does not post twice either.
    class CrashesAfterPublish(InstagramPublisher):
        def publish(self, publication, container_id):  # type: ignore[no-untyped-def]
            super().publish(publication, container_id)
            raise Crash()

    second = sorted(world.pieces)[1]
    world.ledger.schedule(second, "instagram", T0, publisher="instagram")
    [claimed2] = world.ledger.claim_due(now=T0 + timedelta(minutes=1))
    after = CrashesAfterPublish(
        user_id=USER, access_token=SecretStr(TOKEN), media=MediaResolver(world.storage),
        base_url=f"{graph.url}/v21.0", poll_interval_s=0.0, sleep=no_sleep,
    )  # fmt: skip
    with pytest.raises(Crash):
        publish_claimed(world.ledger, after, claimed2)
    assert graph.calls[f"POST /v21.0/{USER}/media_publish"] == 2
    [resumed2] = world.ledger.claim_due(now=datetime.now(UTC) + timedelta(hours=1), stale_after_s=600)
    outcome2 = publish_claimed(world.ledger, publisher(world, graph), resumed2)
    assert (outcome2.status, outcome2.post_id) == ("published", "m2")  # found in the account's media
    assert world.ledger.get(resumed2.id).platform_post_id == "m2"
    assert graph.calls[f"POST /v21.0/{USER}/media_publish"] == 2  # no second post
    assert graph.calls[f"POST /v21.0/{USER}/media"] == 2  # one container per publication


def test_an_invalid_token_is_a_permanent_failure_without_the_token_in_the_error(world: World) -> None:
    with serve(FakeGraph(["FINISHED"])) as api:
        [claimed] = schedule_and_claim(world)
        bad = InstagramPublisher(
            user_id=USER, access_token=SecretStr("wrong-token-abcdef"), media=MediaResolver(world.storage),
            base_url=f"{api.url}/v21.0", sleep=no_sleep,
        )  # fmt: skip
        outcome = publish_claimed(world.ledger, bad, claimed)
    row = world.ledger.get(claimed.id)
    assert outcome.status == "failed" and "code 190" in (row.last_error or "")
    assert "wrong-token" not in (row.last_error or "")


def test_a_file_url_is_refused_before_any_call(tmp_path: Path, graph: FakeGraph) -> None:
    world = make_world(tmp_path, ["ready-safe"])  # local storage without a public base URL
    [claimed] = schedule_and_claim(world)
    outcome = publish_claimed(world.ledger, publisher(world, graph), claimed)
    assert outcome.status == "failed" and "CONTENTFORGE_PUBLIC_BASE_URL" in (outcome.error or "")
    assert sum(graph.calls.values()) == 0
