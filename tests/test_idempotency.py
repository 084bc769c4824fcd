"""``Idempotency-Key`` kept in the database (issue 14): one piece of work per key, across processes.

* the store: of many concurrent claims of one key exactly one wins (SQLite and PostgreSQL); a pending
  key whose owner died is taken over after its lease; a key past its TTL starts new work;
* the API: a retry on a second app instance on the same database (an API restart, or another API
  process) gets the first answer without a second model call or flow run; two concurrent requests
  with one key call the model once (the second waits for the answer, or gets 409 when it may not
  wait); the chain routes start one flow run per key, even when the API died between creating the
  run and keeping its answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prefect.client.schemas.objects import FlowRun
from sqlalchemy import Engine
from support.api import World, build_world
from support.llm_fakes import FakeOpenAI
from support.recording_launcher import RecordingLauncher

from contentforge.config import Settings
from contentforge.db import make_engine, migrate
from contentforge.db.idempotency import Claimed, IdempotencyStore, InProgress, KeyScope, Mismatch, Replay
from contentforge.domain.models import HookStyle
from contentforge_api import create_app
from contentforge_api.replays import Replays, request_fingerprint

FULL = "full-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {FULL}"}
KEY = "sk-test-0123456789"
HOOKS = {"persona": "ava", "template_id": "FIT-002", "platform": "instagram", "count": 3, "seed": 1}
HOUR = timedelta(hours=1)
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


# --- the store --------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IdempotencyStore]:
    url = (
        f"sqlite:///{tmp_path / 'keys.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    migrate(url)
    engine: Engine = make_engine(url)
    yield IdempotencyStore(engine)
    engine.dispose()


def test_of_many_concurrent_claims_of_one_key_exactly_one_does_the_work(store: IdempotencyStore) -> None:
    scope = KeyScope("api", "POST /x", "k1")
    start = threading.Barrier(8)

    def claim(_: int) -> object:
        start.wait()
        return store.claim(scope, "body-a", ttl=HOUR, lease=HOUR)

    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(claim, range(8)))
    owners = [claim for claim in claims if isinstance(claim, Claimed)]
    assert len(owners) == 1 and all(isinstance(c, InProgress) for c in claims if c is not owners[0])

    assert store.settle(scope, owners[0].holder, 200, {"answer": 1})
    assert store.claim(scope, "body-a", ttl=HOUR, lease=HOUR) == Replay(200, {"answer": 1})
    assert isinstance(store.claim(scope, "body-b", ttl=HOUR, lease=HOUR), Mismatch)
    other_token = KeyScope("read", "POST /x", "k1")  # keys belong to a token
    assert isinstance(store.claim(other_token, "body-b", ttl=HOUR, lease=HOUR), Claimed)


def test_a_dead_owners_key_is_taken_over_after_its_lease_and_it_can_no_longer_settle(
    store: IdempotencyStore,
) -> None:
    scope = KeyScope("api", "POST /x", "k2")
    dead = store.claim(scope, "body", ttl=HOUR, lease=timedelta(minutes=5), now=T0)
    assert isinstance(dead, Claimed)
    still_held = store.claim(scope, "body", ttl=HOUR, lease=HOUR, now=T0 + timedelta(minutes=4))
    assert isinstance(still_held, InProgress)
    # Another body never takes a key over, even an abandoned one.
    assert isinstance(
        store.claim(scope, "other", ttl=HOUR, lease=HOUR, now=T0 + timedelta(minutes=6)), Mismatch
    )
    heir = store.claim(scope, "body", ttl=HOUR, lease=HOUR, now=T0 + timedelta(minutes=6))
    assert isinstance(heir, Claimed) and heir.holder != dead.holder
    assert store.settle(scope, dead.holder, 200, {"from": "dead"}) is False  # woke up too late
    store.release(scope, dead.holder)  # nor can it give the heir's key up
    assert store.settle(scope, heir.holder, 200, {"from": "heir"})
    replay = store.claim(scope, "body", ttl=HOUR, lease=HOUR, now=T0 + timedelta(minutes=7))
    assert replay == Replay(200, {"from": "heir"})


def test_a_released_key_is_free_and_a_key_past_its_ttl_starts_new_work(store: IdempotencyStore) -> None:
    scope = KeyScope("api", "POST /x", "k3")
    failed = store.claim(scope, "body", ttl=HOUR, lease=HOUR, now=T0)
    assert isinstance(failed, Claimed)
    store.release(scope, failed.holder)
    done = store.claim(scope, "body", ttl=HOUR, lease=HOUR, now=T0)
    assert isinstance(done, Claimed) and store.settle(scope, done.holder, 202, {"job": "a"})
    assert store.claim(scope, "other", ttl=HOUR, lease=HOUR, now=T0 + timedelta(minutes=59)) == Mismatch()
    later = store.claim(scope, "other", ttl=HOUR, lease=HOUR, now=T0 + HOUR)
    assert isinstance(later, Claimed)
    assert store.purge_expired(now=T0 + 3 * HOUR) == 1


def test_work_longer_than_the_lease_keeps_its_key_because_the_lease_is_renewed(
    store: IdempotencyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow model call outlives the lease: a retry meanwhile must wait, never do the work again."""
    import contentforge_api.replays as replays_module

    monkeypatch.setattr(replays_module, "RENEW_EVERY", timedelta(seconds=0.1))
    keeper = Replays(store, ttl_s=3600, wait_s=0.0, lease=timedelta(seconds=0.5))
    scope = KeyScope("api", "POST /slow", "k-slow")
    calls: list[str] = []
    started, retried = threading.Event(), threading.Event()

    def slow_answer() -> dict[str, str]:
        calls.append("paid")
        started.set()
        assert retried.wait(10)
        return {"answer": "once"}

    first = threading.Thread(target=lambda: keeper.run(scope, {"q": 1}, slow_answer))
    first.start()
    assert started.wait(10)
    time.sleep(1.5)  # three leases long: without renewal the key would be up for takeover
    retry = store.claim(scope, request_fingerprint({"q": 1}), ttl=HOUR, lease=HOUR)
    retried.set()
    first.join(10)
    assert isinstance(retry, InProgress) and calls == ["paid"]
    assert store.claim(scope, request_fingerprint({"q": 1}), ttl=HOUR, lease=HOUR) == Replay(
        200, {"answer": "once"}
    )


# --- hooks: a paid model call ----------------------------------------------------------------


def drafts() -> dict[str, Any]:
    return {
        "hooks": [
            {
                "style": style.value,
                "text": f"{style.value.title()} time: legs, lungs and a long stretch",
                "call_to_action": "Tell me your favourite stretch.",
                "hashtags": ["fitness"],
            }
            for style in (HookStyle.question, HookStyle.tip, HookStyle.story)
        ]
    }


@pytest.fixture()
def model_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(KEY) as server:
        yield server


def paid_settings(data_dir: Path, server: FakeOpenAI, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "api_token": FULL,
        "text_providers": "openai,offline",
        "openai_api_key": KEY,
        "openai_base_url": server.url,
        "openai_model": "gpt-4o-mini",
        "text_max_attempts": 1,
    }
    return Settings(_env_file=None, **(values | overrides))


@pytest.fixture()
def paid_world(settings_env: Path, model_server: FakeOpenAI) -> World:
    return build_world(paid_settings(settings_env, model_server))


def test_a_retry_after_an_api_restart_gets_the_first_answer_without_paying_again(
    paid_world: World, model_server: FakeOpenAI
) -> None:
    headers = {**AUTH, "Idempotency-Key": "hooks-restart"}
    model_server.structured(drafts(), model="gpt-4o-mini")
    with TestClient(create_app(paid_world.settings)) as first_process:
        first = first_process.post("/api/v1/content/hooks", headers=headers, json=HOOKS)
    assert first.status_code == 200, first.text
    with TestClient(create_app(paid_world.settings)) as restarted:
        retry = restarted.post("/api/v1/content/hooks", headers=headers, json=HOOKS)
        other = restarted.post("/api/v1/content/hooks", headers=headers, json={**HOOKS, "seed": 2})
    assert retry.status_code == 200 and retry.json() == first.json()
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(model_server.requests) == 1


def _concurrently(*calls: Callable[[], Any]) -> list[Any]:
    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def test_two_concurrent_requests_with_one_key_on_two_api_processes_call_the_model_once(
    paid_world: World, model_server: FakeOpenAI
) -> None:
    model_server.structured(drafts(), model="gpt-4o-mini", delay_s=1.0)
    headers = {**AUTH, "Idempotency-Key": "hooks-concurrent"}
    with (
        TestClient(create_app(paid_world.settings)) as one,
        TestClient(create_app(paid_world.settings)) as two,
    ):
        answers = _concurrently(
            lambda: one.post("/api/v1/content/hooks", headers=headers, json=HOOKS),
            lambda: two.post("/api/v1/content/hooks", headers=headers, json=HOOKS),
        )
    assert [answer.status_code for answer in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()  # the second waited for the first one's answer
    assert len(model_server.requests) == 1


def test_a_request_that_may_not_wait_for_the_key_gets_409_in_progress(
    settings_env: Path, model_server: FakeOpenAI
) -> None:
    world = build_world(paid_settings(settings_env, model_server, api_idempotency_wait_s=0.0))
    model_server.structured(drafts(), model="gpt-4o-mini", delay_s=1.5)
    headers = {**AUTH, "Idempotency-Key": "hooks-busy"}
    with TestClient(create_app(world.settings)) as one, TestClient(create_app(world.settings)) as two:
        slow = threading.Thread(target=lambda: one.post("/api/v1/content/hooks", headers=headers, json=HOOKS))
        slow.start()
        while not model_server.requests:  # the first request holds the key and is at the model
            threading.Event().wait(0.02)
        busy = two.post("/api/v1/content/hooks", headers=headers, json=HOOKS)
        slow.join()
        done = two.post("/api/v1/content/hooks", headers=headers, json=HOOKS)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "idempotency_key_in_progress"
    assert busy.headers["retry-after"] == "1"
    assert done.status_code == 200 and len(model_server.requests) == 1


# --- chain routes: a flow run per key ------------------------------------------------------------


class SlowLauncher(RecordingLauncher):
    """TEST DOUBLE: records launches (Prefect's idempotency contract kept), each taking ``delay_s``."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s

    async def launch_deployment(
        self,
        deployment_name: str,
        parameters: Mapping[str, Any],
        *,
        tags: Any,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> FlowRun:
        await asyncio.sleep(self.delay_s)
        return await super().launch_deployment(
            deployment_name, parameters, tags=tags, idempotency_key=idempotency_key, **options
        )


@pytest.fixture()
def world(settings_env: Path) -> World:
    return build_world(Settings(_env_file=None, data_dir=settings_env, api_token=FULL))


RESEARCH = "/api/v1/brands/Trailbean/research"
URLS = {"urls": ["https://trailbean.example/"]}


def test_a_chain_step_retried_on_a_restarted_api_starts_one_flow_run(world: World) -> None:
    launcher = SlowLauncher()
    headers = {**AUTH, "Idempotency-Key": f"research-{uuid.uuid4()}"}
    with TestClient(create_app(world.settings, launcher=launcher)) as first_process:
        first = first_process.post(RESEARCH, headers=headers, json=URLS)
    with TestClient(create_app(world.settings, launcher=SlowLauncher())) as restarted:
        retry = restarted.post(RESEARCH, headers=headers, json=URLS)
        other = restarted.post(RESEARCH, headers=headers, json={"urls": ["https://trailbean.example/about"]})
        unkeyed = restarted.post(RESEARCH, headers=AUTH, json=URLS)
    assert first.status_code == retry.status_code == 202, retry.text
    assert retry.json() == first.json() and len(launcher.launches) == 1
    assert launcher.launches[0].idempotency_key is not None  # Prefect holds the run's key as well
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert unkeyed.status_code == 202 and unkeyed.json()["job_id"] != first.json()["job_id"]


def test_concurrent_chain_requests_with_one_key_start_one_flow_run(world: World) -> None:
    launcher = SlowLauncher(delay_s=0.5)  # both API instances create runs through one "Prefect"
    headers = {**AUTH, "Idempotency-Key": f"research-{uuid.uuid4()}"}
    with (
        TestClient(create_app(world.settings, launcher=launcher)) as one,
        TestClient(create_app(world.settings, launcher=launcher)) as two,
    ):
        answers = _concurrently(
            lambda: one.post(RESEARCH, headers=headers, json=URLS),
            lambda: two.post(RESEARCH, headers=headers, json=URLS),
        )
    assert [answer.status_code for answer in answers] == [202, 202], [a.text for a in answers]
    assert answers[0].json()["job_id"] == answers[1].json()["job_id"]
    assert len(launcher.launches) == 1


def test_an_api_that_died_after_creating_the_run_leaves_a_retry_the_same_run(world: World) -> None:
    """The process created the flow run, then died before keeping the answer: the key stays pending.
    A retry after the lease takes the key over and asks Prefect again with the same run key, so it
    gets that run back instead of starting the step a second time."""
    launcher = SlowLauncher()
    headers = {**AUTH, "Idempotency-Key": f"research-{uuid.uuid4()}"}
    app = create_app(world.settings, launcher=launcher)
    with TestClient(app, raise_server_exceptions=False) as dying:
        kept = Replays(
            IdempotencyStore(app.state.contentforge.services.sessions),
            ttl_s=3600,
            wait_s=0,
            lease=timedelta(0),
        )
        app.state.contentforge_replays = kept

        def die(*_: Any) -> bool:
            raise RuntimeError("the API process died before it kept the answer")

        kept.store.settle = die  # type: ignore[method-assign]
        crashed = dying.post(RESEARCH, headers=headers, json=URLS)
    assert crashed.status_code == 500 and len(launcher.launches) == 1
    with TestClient(create_app(world.settings, launcher=launcher)) as restarted:
        retry = restarted.post(RESEARCH, headers=headers, json=URLS)
    assert retry.status_code == 202, retry.text
    assert len(launcher.launches) == 1  # the same run came back from Prefect
    assert retry.json()["flow_run_name"] == "recorded-1"
