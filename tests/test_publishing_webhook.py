"""The webhook publisher and notifier: signed JSON a receiver can verify, against a local endpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import SecretStr
from support.publishing import T0, FakeApi, Request, Response, make_world, serve

from contentforge.publishing import PublishedPost, publish_claimed
from contentforge.publishing.outbox import OutboxPublisher
from contentforge.publishing.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    WebhookPublisher,
    sign,
    verify,
)

SECRET = SecretStr("whsec-test-5f3a")


class Receiver(FakeApi):
    """Verifies signatures like a real receiver would and drops repeated deliveries."""

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.fail_first = fail_first
        self.accepted: dict[str, dict] = {}  # type: ignore[type-arg]

    def handle(self, request: Request) -> Response:
        ok = verify(SECRET, request.headers[TIMESTAMP_HEADER.lower()], request.body,
                    request.headers[SIGNATURE_HEADER.lower()])  # fmt: skip
        if not ok:
            return 401, {}, {"error": "bad signature"}
        if self.fail_first:
            self.fail_first -= 1
            return 503, {}, {"error": "try later"}
        key = request.headers["idempotency-key"]
        self.accepted.setdefault(key, json.loads(request.body))
        return 200, {}, {"id": f"hook-{len(self.accepted)}", "url": f"https://social.example/{key}"}


def test_webhook_publish_is_signed_and_verifiable(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"])
    world.ledger.schedule(
        next(iter(world.pieces)), "threads", T0, publisher="webhook", caption="Hello threads"
    )
    [claimed] = world.ledger.claim_due(now=T0)
    with serve(Receiver()) as api:
        outcome = publish_claimed(world.ledger, WebhookPublisher(f"{api.url}/hook", SECRET), claimed)
    assert outcome.status == "published" and outcome.post_id == "hook-1"
    payload = api.accepted[claimed.idempotency_key]
    assert payload["event"] == "publication.publish" and payload["caption"] == "Hello threads"
    request = api.requests[0]
    assert SECRET.get_secret_value().encode() not in request.body
    # Tampering with the body or the timestamp breaks the signature; old timestamps are refused.
    stamp = request.headers[TIMESTAMP_HEADER.lower()]
    signature = request.headers[SIGNATURE_HEADER.lower()]
    assert verify(SECRET, stamp, request.body, signature)
    assert not verify(SECRET, stamp, request.body.replace(b"Hello", b"Hallo"), signature)
    assert not verify(SECRET, str(int(stamp) + 1), request.body, signature)
    old = int(time.time()) - 3600
    assert not verify(SECRET, str(old), request.body, sign(SECRET, old, request.body))


def test_a_5xx_is_transient_and_the_retry_delivers_once(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"])
    world.ledger.schedule(next(iter(world.pieces)), "linkedin", T0, publisher="webhook", caption="Hi")
    [claimed] = world.ledger.claim_due(now=T0)
    with serve(Receiver(fail_first=1)) as api:
        publisher = WebhookPublisher(f"{api.url}/hook", SECRET)
        try:
            publish_claimed(world.ledger, publisher, claimed)
            raise AssertionError("a 503 must raise a transient error")
        except Exception as exc:
            assert type(exc).__name__ == "TransientError" and "HTTP 503" in str(exc)
        assert world.ledger.get(claimed.id).status == "publishing"
        assert publish_claimed(world.ledger, publisher, claimed).status == "published"
    assert len(api.accepted) == 1


def test_notifier_reports_published_and_failed(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe", "ready-safe"])
    first, second = sorted(world.pieces)
    world.ledger.schedule(first, "instagram", T0, publisher="outbox")
    world.ledger.schedule(second, "instagram", T0, publisher="outbox")
    claimed = world.ledger.claim_due(now=T0)

    class Broken(OutboxPublisher):
        def publish(self, publication, container_id):  # type: ignore[no-untyped-def]
            if publication.piece_id == second:
                from contentforge.publishing import PermanentFailure

                raise PermanentFailure("media rejected")
            return PublishedPost("local-1", "file:///x")

    with serve(Receiver()) as api:
        notifier = WebhookNotifier(f"{api.url}/events", SECRET)
        outcomes = [
            publish_claimed(world.ledger, Broken(tmp_path / "o"), p, notifier=notifier) for p in claimed
        ]
    assert [o.status for o in outcomes] == ["published", "failed"]
    events = {body["piece_id"]: body for body in api.accepted.values()}
    assert events[first]["event"] == "publication.published" and events[first]["post_id"] == "local-1"
    assert events[second]["event"] == "publication.failed" and "media rejected" in events[second]["error"]
