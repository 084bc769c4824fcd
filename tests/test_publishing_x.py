"""The X API v2 publisher against a local server: media upload, post creation, 429 with reset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from support.publishing import T0, Crash, make_world, serve
from support.x import TOKEN, FakeX

from contentforge.publishing import PermanentFailure, publish_claimed
from contentforge.publishing.media import MediaResolver
from contentforge.publishing.x import XPublisher


def test_uploads_media_then_posts_with_it(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"])
    piece = next(iter(world.pieces))
    world.ledger.schedule(piece, "x", T0, publisher="x")
    [claimed] = world.ledger.claim_due(now=T0)
    with serve(FakeX()) as api:
        pub = XPublisher(access_token=SecretStr(TOKEN), media=MediaResolver(world.storage), base_url=api.url)
        outcome = publish_claimed(world.ledger, pub, claimed)
    assert outcome.status == "published" and outcome.url == f"https://x.com/i/web/status/{outcome.post_id}"
    [media_id] = api.media
    assert api.media[media_id] == world.storage.get(f"content/mia/{piece}.png")
    assert api.posts == [{"text": claimed.caption, "media": {"media_ids": [media_id]}}]
    assert world.ledger.get(claimed.id).platform_container_id == media_id
    assert api.calls["POST /2/media/metadata"] == 1


def test_429_reschedules_at_the_reset_and_a_rerun_reuses_the_upload(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"])
    world.ledger.schedule(next(iter(world.pieces)), "x", T0, publisher="x")
    [claimed] = world.ledger.claim_due(now=T0)
    with serve(FakeX(limited=1, reset_in=120)) as api:
        pub = XPublisher(access_token=SecretStr(TOKEN), media=MediaResolver(world.storage), base_url=api.url)
        outcome = publish_claimed(world.ledger, pub, claimed)
        assert outcome.status == "deferred"
        row = world.ledger.get(claimed.id)
        assert row.status == "scheduled" and "HTTP 429" in (row.last_error or "")
        assert row.scheduled_for is not None
        assert abs((row.scheduled_for - datetime.now(UTC)).total_seconds() - 120) < 10
        # Not due yet; at the reset it is claimed again and the stored media id is reused.
        assert world.ledger.claim_due(now=datetime.now(UTC)) == []
        [again] = world.ledger.claim_due(now=datetime.now(UTC) + timedelta(seconds=130))
        assert publish_claimed(world.ledger, pub, again).status == "published"
    assert api.calls["POST /2/media/upload"] == 1
    assert api.calls["POST /2/tweets"] == 2 and len(api.posts) == 1


def test_a_crash_after_upload_resumes_without_uploading_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(tmp_path, ["ready-safe"])
    world.ledger.schedule(next(iter(world.pieces)), "x", T0, publisher="x")
    [claimed] = world.ledger.claim_due(now=T0)

    def dies(publication_id: int, claim_token: str | None) -> None:
        raise Crash()  # the upload id is stored; the process dies before the post call starts

    with serve(FakeX()) as api:
        kwargs = {
            "access_token": SecretStr(TOKEN),
            "media": MediaResolver(world.storage),
            "base_url": api.url,
        }
        with monkeypatch.context() as patched:
            patched.setattr(world.ledger, "begin_publish", dies)
            with pytest.raises(Crash):
                publish_claimed(world.ledger, XPublisher(**kwargs), claimed)  # type: ignore[arg-type]
        [resumed] = world.ledger.claim_due(now=datetime.now(UTC) + timedelta(hours=1), stale_after_s=600)
        assert publish_claimed(world.ledger, XPublisher(**kwargs), resumed).status == "published"  # type: ignore[arg-type]
    assert (api.calls["POST /2/media/upload"], len(api.posts)) == (1, 1)


def test_an_overlong_caption_is_refused_before_any_call(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"])
    piece = next(iter(world.pieces))
    # 130 CJK chars weigh 260, two URLs 46, two spaces 2: 308 > 280, although len() is ~210.
    caption = "字" * 130 + " https://example.com/a-very-long-path-that-counts-as-23 https://example.org/x"
    world.ledger.schedule(piece, "x", T0, publisher="x", caption=caption)
    [claimed] = world.ledger.claim_due(now=T0)
    with serve(FakeX()) as api:
        pub = XPublisher(access_token=SecretStr(TOKEN), media=MediaResolver(world.storage), base_url=api.url)
        with pytest.raises(PermanentFailure, match="308 weighted chars"):
            pub.prepare(claimed)
        assert publish_claimed(world.ledger, pub, claimed).status == "failed"
    assert sum(api.calls.values()) == 0
