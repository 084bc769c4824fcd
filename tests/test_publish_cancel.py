"""A cancelled publish job leaves no half-published post (issue 14, item 2).

The ``publish-due`` deployment (prefect.yaml) runs on a real ``cpu`` process worker against the
session's Prefect server and publishes through the webhook publisher to a loopback receiver that
answers slowly (``DELAY_S`` a delivery, one at a time) and keeps the first delivery of each
``Idempotency-Key`` as the post, as the receiver contract says. The job is cancelled through
``POST /api/v1/jobs/{id}/cancel`` while a delivery is in flight, so the worker kills the process
mid-post. Then, for every publication:

* either it is ``published`` in the ledger, with the post the receiver made for it, made once;
* or it is not ``published``, and the receiver made at most one post for it (a post the platform
  made while the ledger was never told: the killed run's last delivery);

and a rerun once the killed run's claims expired (the ledger's clock moved past the lease) publishes
exactly the missing ones: every publication ends ``published`` with one post each, and no
publication recorded before the cancel is delivered again.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from support.jobs import ENDED, wait_job
from support.publishing import FakeApi, Request, Response, make_world, serve
from support.workers import cpu_worker, worker_logs

from contentforge.config import get_settings
from contentforge.db.models import utcnow
from contentforge.publishing import publish_claimed
from contentforge.publishing.webhook import WebhookPublisher

pytestmark = pytest.mark.slow

TOKEN = "publish-cancel-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "whsec-cancel-test"
DELAY_S = 2.0
PIECES = 6
GATE_S = 120.0
"""The longest a delivery hangs while the test cancels (the job's own wait gives up after 90 s)."""


class SlowReceiver(FakeApi):
    """A platform that takes ``DELAY_S`` per delivery and makes one post per ``Idempotency-Key``."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: dict[str, str] = {}
        self.deliveries: Counter[str] = Counter()
        self.gate = threading.Event()
        """Cleared by the test when it cancels: deliveries then hang until it is set again, so the
        run is killed mid-post however long the cancellation takes on a loaded machine (it once took
        longer than the remaining deliveries and every post was made before the kill)."""
        self.gate.set()

    def handle(self, request: Request) -> Response:
        key = request.headers["idempotency-key"]
        self.deliveries[key] += 1
        time.sleep(DELAY_S)
        self.gate.wait(timeout=GATE_S)
        self.posts.setdefault(key, f"post-{len(self.posts) + 1}")
        return 200, {}, {"id": self.posts[key], "url": f"https://social.example/{self.posts[key]}"}


@pytest.fixture
def receiver() -> Iterator[SlowReceiver]:
    with serve(SlowReceiver()) as api:
        yield api  # type: ignore[misc]


@pytest.fixture
def worker(settings_env: Path, prefect_server: str, tmp_path: Path, receiver: SlowReceiver) -> Iterator[Path]:
    env = {
        "CONTENTFORGE_PUBLISHER_OTHER": "webhook",
        "CONTENTFORGE_WEBHOOK_URL": f"{receiver.url}/hook",
        "CONTENTFORGE_WEBHOOK_SECRET": SECRET,
    }
    with cpu_worker(prefect_server, settings_env, tmp_path / "run", **env) as run_dir:
        yield run_dir


async def _start_publish_job() -> str:
    from contentforge_api.launcher import BatchLauncher

    run = await BatchLauncher().launch_deployment(
        "publish-due/publish-due", {"limit": 20}, tags=["contentforge", "test-publish-cancel"]
    )
    return str(run.id)


def test_a_cancelled_publish_job_leaves_no_half_published_post_and_a_rerun_publishes_the_rest(
    settings_env: Path,
    tmp_path: Path,
    receiver: SlowReceiver,
    worker: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from contentforge_api.app import create_app

    world = make_world(
        tmp_path,
        ["ready-safe"] * PIECES,
        url=f"sqlite:///{(settings_env / 'contentforge.db').resolve()}",
        hook_platforms=("threads",),
    )
    due = utcnow() - timedelta(minutes=1)
    ids = [world.ledger.schedule(piece, "threads", due, publisher="webhook")[0] for piece in world.pieces]
    keys = {pid: world.ledger.get(pid).idempotency_key for pid in ids}

    monkeypatch.setenv("CONTENTFORGE_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as api:
        job_id = asyncio.run(_start_publish_job())
        deadline = time.monotonic() + 180
        while len(receiver.posts) < 1 or sum(receiver.deliveries.values()) <= len(receiver.posts):
            # Cancel while a delivery is in flight: one post made, the next one being made.
            assert time.monotonic() < deadline, ("the publish job never got going", worker_logs(worker))
            time.sleep(0.05)
        receiver.gate.clear()  # the delivery in flight is answered only after the kill
        cancel = api.post(f"/api/v1/jobs/{job_id}/cancel", headers=AUTH)
        assert cancel.status_code == 202, cancel.text
        job = wait_job(api, job_id, ENDED, timeout_s=90, headers=AUTH)
        receiver.gate.set()  # the platform finishes the post the killed run never hears about
        assert job["status"] == "cancelled", (job, worker_logs(worker))

    before = {pid: world.ledger.get(pid) for pid in ids}
    recorded = {pid for pid, row in before.items() if row.status == "published"}
    assert len(recorded) < PIECES, "cancelled mid-way: not everything was published"
    for pid, row in before.items():
        key = keys[pid]
        if row.status == "published":
            assert row.platform_post_id == receiver.posts[key] and receiver.deliveries[key] == 1
        else:
            assert row.platform_post_id is None  # nothing recorded half-way: no post id without published
            assert receiver.deliveries[key] <= 1  # at most the one delivery the kill interrupted
    deliveries_before = dict(receiver.deliveries)
    unrecorded_posts = sum(1 for pid in ids if pid not in recorded and keys[pid] in receiver.posts)
    print(
        f"cancelled with {len(recorded)} of {PIECES} published and recorded; {unrecorded_posts} post(s) "
        "made by the platform while the killed run never recorded them"
    )

    # The rerun: once the killed run's claims expired (the clock moved past their lease).
    later = utcnow() + timedelta(seconds=get_settings().publish_stale_after_s + 1)
    publisher = WebhookPublisher(f"{receiver.url}/hook", SecretStr(SECRET))
    claimed = world.ledger.claim_due(now=later, limit=20, stale_after_s=get_settings().publish_stale_after_s)
    assert {publication.id for publication in claimed} == set(ids) - recorded, "exactly the missing ones"
    for publication in claimed:
        assert publish_claimed(world.ledger, publisher, publication).status == "published"

    after = {pid: world.ledger.get(pid) for pid in ids}
    assert all(row.status == "published" for row in after.values())
    assert len(receiver.posts) == PIECES, json.dumps(receiver.posts)  # one post per publication
    assert {after[pid].platform_post_id for pid in ids} == set(receiver.posts.values())
    for pid in recorded:
        assert receiver.deliveries[keys[pid]] == deliveries_before[keys[pid]] == 1, "not delivered again"
