"""The TikTok Content Posting API publisher (photo posts) against a local server, incl. unaudited clients."""

from __future__ import annotations

from pathlib import Path

import pytest
from publishing_support import T0, FakeApi, Request, Response, World, make_world, no_sleep, serve
from pydantic import SecretStr

from contentforge.publishing import publish_claimed
from contentforge.publishing.media import MediaResolver
from contentforge.publishing.tiktok import TikTokPublisher

TOKEN = "act.tiktok-user-token-42"
OK = {"code": "ok", "message": "", "log_id": "202601010000"}


class FakeTikTok(FakeApi):
    def __init__(self, *, audited: bool = True, outcome: str = "PUBLISH_COMPLETE") -> None:
        super().__init__()
        self.audited = audited
        self.outcome = outcome
        self.inits: list[dict] = []  # type: ignore[type-arg]
        self.polls = 0

    def handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {}, {"error": {"code": "access_token_invalid", "message": "bad token"}}
        if request.path == "/v2/post/publish/creator_info/query/":
            options = (
                ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
                if self.audited
                else ["SELF_ONLY"]
            )
            data = {
                "creator_username": "mia.moves",
                "privacy_level_options": options,
                "comment_disabled": False,
            }
            return 200, {}, {"data": data, "error": OK}
        if request.path == "/v2/post/publish/content/init/":
            body = request.json()
            if not self.audited and body["post_info"]["privacy_level"] != "SELF_ONLY":
                error = {
                    "code": "unaudited_client_can_only_post_to_private_accounts",
                    "message": "private only",
                }
                return 403, {}, {"error": error}
            self.inits.append(body)
            return 200, {}, {"data": {"publish_id": f"p_pub_url~v2.{len(self.inits)}"}, "error": OK}
        if request.path == "/v2/post/publish/status/fetch/":
            self.polls += 1
            if self.polls < 3:
                return 200, {}, {"data": {"status": "PROCESSING_DOWNLOAD"}, "error": OK}
            if self.outcome == "FAILED":
                return (
                    200,
                    {},
                    {"data": {"status": "FAILED", "fail_reason": "picture_size_check_failed"}, "error": OK},
                )
            ids = [7345678901234567890] if body_privacy(self) != "SELF_ONLY" else []
            return (
                200,
                {},
                {"data": {"status": "PUBLISH_COMPLETE", "publicaly_available_post_id": ids}, "error": OK},
            )
        return 404, {}, {"error": {"code": "not_found", "message": request.path}}


def body_privacy(api: FakeTikTok) -> str:
    return api.inits[-1]["post_info"]["privacy_level"]


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
