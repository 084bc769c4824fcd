"""The offline outbox publisher and the factory that picks publishers from settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr
from support.publishing import T0, make_world

from contentforge.config import Settings
from contentforge.errors import InvalidInput
from contentforge.publishing import PermanentFailure, build_publisher, publish_claimed, publisher_name
from contentforge.publishing.media import MediaResolver
from contentforge.publishing.outbox import OutboxPublisher
from contentforge.publishing.webhook import WebhookPublisher
from contentforge.publishing.x import XPublisher


def test_outbox_writes_post_and_image_once(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"])
    piece = next(iter(world.pieces))
    world.ledger.schedule(piece, "instagram", T0, publisher="outbox")
    [claimed] = world.ledger.claim_due(now=T0)
    outbox = OutboxPublisher(tmp_path / "outbox", MediaResolver(world.storage))
    outcome = publish_claimed(world.ledger, outbox, claimed)
    post = tmp_path / "outbox" / "instagram" / f"{piece}.json"
    image = tmp_path / "outbox" / "instagram" / f"{piece}.png"
    record = json.loads(post.read_text())
    assert outcome.status == "published" and outcome.url == post.resolve().as_uri()
    assert record["caption"] == claimed.caption and record["idempotency_key"] == claimed.idempotency_key
    assert image.read_bytes() == world.storage.get(f"content/mia/{piece}.png")
    stamp = post.stat().st_mtime_ns
    # Publishing again (a rerun after a crash) returns the same post and rewrites nothing.
    again = outbox.publish(claimed, None)
    assert (again.post_id, again.url, again.detail["written"]) == (
        claimed.idempotency_key,
        outcome.url,
        False,
    )
    assert post.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in post.parent.iterdir()) == [f"{piece}.json", f"{piece}.png"]  # no temp files


def test_outbox_refuses_to_overwrite_another_publication(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"])
    piece = next(iter(world.pieces))
    world.ledger.schedule(piece, "x", T0, publisher="outbox")
    [claimed] = world.ledger.claim_due(now=T0)
    target = tmp_path / "outbox" / "x" / f"{piece}.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"idempotency_key": "someone-else"}))
    with pytest.raises(PermanentFailure, match="belongs to another publication"):
        OutboxPublisher(tmp_path / "outbox", MediaResolver(world.storage)).publish(claimed, None)


def test_factory_defaults_to_the_outbox_and_names_missing_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert isinstance(build_publisher(settings, "instagram"), OutboxPublisher)
    assert publisher_name(settings, "linkedin") == "outbox"
    with pytest.raises(InvalidInput, match="CONTENTFORGE_X_ACCESS_TOKEN"):
        build_publisher(Settings(data_dir=tmp_path, publisher_x="api"), "x")
    with pytest.raises(InvalidInput, match="CONTENTFORGE_INSTAGRAM_USER_ID"):
        build_publisher(Settings(data_dir=tmp_path, publisher_instagram="api"), "instagram")
    with pytest.raises(InvalidInput, match="CONTENTFORGE_WEBHOOK_URL"):
        build_publisher(Settings(data_dir=tmp_path, publisher_tiktok="webhook"), "tiktok")
    with pytest.raises(InvalidInput, match="unknown platform"):
        build_publisher(settings, "myspace")
    x = Settings(data_dir=tmp_path, publisher_x="api", x_access_token=SecretStr("tok"))
    assert isinstance(build_publisher(x, "x"), XPublisher) and publisher_name(x, "x") == "x"
    hook = Settings(
        data_dir=tmp_path, publisher_other="webhook", webhook_url="https://hooks.example.com/cf",
        webhook_secret=SecretStr("s3cret"),
    )  # fmt: skip
    assert isinstance(build_publisher(hook, "threads"), WebhookPublisher)
    assert "s3cret" not in repr(hook) and "tok" not in repr(x.x_access_token)
