"""The TikTok Content Posting API publisher (photo posts) against a local server, incl. unaudited clients."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from support.publishing import T0, FakeApi, World, make_world, no_sleep, serve
from support.tiktok import TOKEN, FakeTikTok

from contentforge.publishing import publish_claimed
from contentforge.publishing.media import MediaResolver
from contentforge.publishing.tiktok import TikTokPublisher


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path, ["ready-safe"], public_base_url="https://cdn.example.com")


def claim(world: World):  # type: ignore[no-untyped-def]
    world.ledger.schedule(next(iter(world.pieces)), "tiktok", T0, publisher="tiktok")
    [claimed] = world.ledger.claim_due(now=T0)
    return claimed


def make(world: World, api: FakeApi, privacy: str = "PUBLIC_TO_EVERYONE") -> TikTokPublisher:
    return TikTokPublisher(
        access_token=SecretStr(TOKEN), media=MediaResolver(world.storage), base_url=api.url,
        privacy_level=privacy, poll_interval_s=0.0, sleep=no_sleep,
    )  # fmt: skip


def test_direct_photo_post_pulled_from_url_and_polled_to_completion(world: World) -> None:
    claimed = claim(world)
    with serve(FakeTikTok()) as api:
        outcome = publish_claimed(world.ledger, make(world, api), claimed)
    assert outcome.status == "published"
    assert outcome.url == "https://www.tiktok.com/@mia.moves/photo/7345678901234567890"
    [init] = api.inits
    assert (init["media_type"], init["post_mode"]) == ("PHOTO", "DIRECT_POST")
    assert init["source_info"]["source"] == "PULL_FROM_URL"
    assert init["source_info"]["photo_images"] == [
        f"https://cdn.example.com/content/mia/{claimed.piece_id}.tiktok.jpg"
    ]
    assert init["post_info"]["is_aigc"] is True and init["post_info"]["privacy_level"] == "PUBLIC_TO_EVERYONE"
    assert len(init["post_info"]["title"]) <= 90 and init["post_info"]["description"] == claimed.caption
    assert world.ledger.get(claimed.id).platform_container_id == "p_pub_url~v2.1"
    assert api.calls["POST /v2/post/publish/status/fetch/"] == 3


def test_unaudited_client_refuses_public_posts_with_a_clear_message(world: World) -> None:
    claimed = claim(world)
    with serve(FakeTikTok(audited=False)) as api:
        outcome = publish_claimed(world.ledger, make(world, api), claimed)
    assert outcome.status == "failed"
    assert "allowed: ['SELF_ONLY']" in (outcome.error or "") and "unaudited" in (outcome.error or "")
    assert api.inits == []  # refused before init, from creator_info


def test_unaudited_init_error_is_explained(world: World) -> None:
    claimed = claim(world)
    with serve(FakeTikTok(audited=False)) as api:
        pub = make(world, api)
        pub.creator_info = lambda: {"privacy_level_options": ["PUBLIC_TO_EVERYONE"]}  # type: ignore[method-assign]
        outcome = publish_claimed(world.ledger, pub, claimed)
    assert outcome.status == "failed"
    assert "CONTENTFORGE_TIKTOK_PRIVACY_LEVEL=SELF_ONLY" in (outcome.error or "")


def test_self_only_posts_complete_without_a_public_link(world: World) -> None:
    claimed = claim(world)
    with serve(FakeTikTok(audited=False)) as api:
        outcome = publish_claimed(world.ledger, make(world, api, privacy="SELF_ONLY"), claimed)
    assert (outcome.status, outcome.post_id, outcome.url) == ("published", None, None)


def test_failed_processing_fails_the_publication(world: World) -> None:
    claimed = claim(world)
    with serve(FakeTikTok(outcome="FAILED")) as api:
        outcome = publish_claimed(world.ledger, make(world, api), claimed)
    assert outcome.status == "failed" and "picture_size_check_failed" in (outcome.error or "")
