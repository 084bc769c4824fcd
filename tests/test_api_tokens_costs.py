"""Money and tokens: the read-only token never reaches a model or moderation provider, and every paid
model call made for an API request is on the cost ledger, once.

The model is a loopback server speaking the OpenAI Chat Completions API (``support.llm_fakes``), so
"no provider touched" is checked where it matters: the server received no request at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from support.api import World, build_world
from support.llm_fakes import FakeOpenAI

from contentforge.config import Settings
from contentforge.db.models import CostEntryORM
from contentforge.db.request_costs import RequestCostRepository
from contentforge.domain.models import HookStyle
from contentforge_api import create_app

FULL = "full-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {FULL}"}
READ_AUTH = {"Authorization": f"Bearer {READ}"}
KEY = "sk-test-0123456789"
HOOKS = {"persona": "ava", "template_id": "FIT-002", "platform": "instagram", "count": 3, "seed": 1}
PAID_ROUTES = [
    ("/api/v1/content/hooks", HOOKS),
    ("/api/v1/content/hooks/variations", {**HOOKS, "hook": {"text": "Leg day is the best day"}}),
    ("/api/v1/content/cta", HOOKS),
    ("/api/v1/content/safety-check", {"text": "morning stretch"}),
]


def drafts(count: int = 3) -> dict[str, Any]:
    styles = [HookStyle.question, HookStyle.tip, HookStyle.story, HookStyle.teaser][:count]
    return {
        "hooks": [
            {
                "style": style.value,
                "text": f"{style.value.title()} time: legs, lungs and a long stretch 💪",
                "call_to_action": "Tell me your favourite stretch.",
                "hashtags": ["fitness", "legday"],
            }
            for style in styles
        ]
    }


def settings_for(data_dir: Path, server: FakeOpenAI, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "api_token": FULL,
        "api_read_token": READ,
        "text_providers": "openai,offline",
        "openai_api_key": KEY,
        "openai_base_url": server.url,
        "openai_model": "gpt-4o-mini",
        "text_max_attempts": 1,
        "moderation_backends": "openai",
        "openai_moderation_base_url": server.url,
    }
    return Settings(_env_file=None, **(values | overrides))


@pytest.fixture()
def model_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(KEY) as server:
        yield server


@pytest.fixture()
def paid_world(settings_env: Path, model_server: FakeOpenAI) -> World:
    return build_world(settings_for(settings_env, model_server))


def api_charges(world: World) -> list[CostEntryORM]:
    with world.repo.sessions.read() as session:
        return list(
            session.scalars(
                select(CostEntryORM).where(CostEntryORM.step == "api_hooks").order_by(CostEntryORM.id)
            )
        )


@pytest.mark.parametrize(("path", "body"), PAID_ROUTES)
def test_the_read_only_token_is_refused_before_any_provider_is_touched(
    paid_world: World, model_server: FakeOpenAI, path: str, body: dict[str, Any]
) -> None:
    client = TestClient(create_app(paid_world.settings))
    refused = client.post(path, headers=READ_AUTH, json=body)
    assert refused.status_code == 403, refused.text
    assert "read-only" in refused.json()["error"]["message"]
    assert model_server.requests == []  # neither the text model nor the moderation endpoint was called
    assert api_charges(paid_world) == []
    # Reading still works with that token.
    assert client.get("/api/v1/personas/ava", headers=READ_AUTH).status_code == 200


def test_every_paid_hook_call_is_charged_once_per_call(paid_world: World, model_server: FakeOpenAI) -> None:
    client = TestClient(create_app(paid_world.settings))
    model_server.structured(drafts(), input_tokens=1000, output_tokens=500, model="gpt-4o-mini")
    first = client.post("/api/v1/content/hooks", headers=AUTH, json=HOOKS)
    assert first.status_code == 200, first.text
    assert first.json()["writer"] == "llm" and len(first.json()["hooks"]) == 3
    assert len(model_server.requests) == 1
    charges = api_charges(paid_world)
    assert len(charges) == 1
    charge = charges[0]
    assert charge.kind == "text" and charge.provider == "openai" and charge.persona_id == "ava"
    assert charge.subject_id == "content/hooks" and charge.batch_id is None
    assert charge.amount_usd == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1_000_000)
    assert charge.charge_key is not None and charge.charge_key.startswith("api:")
    assert KEY not in str(charge.detail)

    # Another request calls the model again: that is paid again, and charged again under its own key.
    model_server.structured(drafts(), input_tokens=1000, output_tokens=500, model="gpt-4o-mini")
    assert client.post("/api/v1/content/hooks", headers=AUTH, json=HOOKS).status_code == 200
    charges = api_charges(paid_world)
    assert len(charges) == 2 and len({c.charge_key for c in charges}) == 2

    # Recording a call again under its key (a retried write) adds nothing.
    store = RequestCostRepository(paid_world.repo.sessions)
    again = store.charge_request_call(
        "api_hooks", charge_key=str(charge.charge_key), provider="openai", amount_usd=charge.amount_usd
    )
    assert again is False and len(api_charges(paid_world)) == 2
    assert store.request_spend("api_hooks", persona_id="ava") == (2, pytest.approx(2 * charge.amount_usd))
    stats = client.get("/api/v1/personas/ava/stats", headers=AUTH).json()  # the persona's spend shows it
    assert stats["strategy_cost_usd_by_step"]["api_hooks"] == pytest.approx(2 * charge.amount_usd)


def test_a_retry_with_its_idempotency_key_is_answered_without_paying_again(
    paid_world: World, model_server: FakeOpenAI
) -> None:
    client = TestClient(create_app(paid_world.settings))
    key = {**AUTH, "Idempotency-Key": "hooks-retry-1"}
    model_server.structured(drafts(), model="gpt-4o-mini")
    first = client.post("/api/v1/content/hooks", headers=key, json=HOOKS)
    retry = client.post("/api/v1/content/hooks", headers=key, json=HOOKS)
    assert first.status_code == retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert len(model_server.requests) == 1 and len(api_charges(paid_world)) == 1  # one call, one charge

    other_body = client.post("/api/v1/content/hooks", headers=key, json={**HOOKS, "seed": 2})
    assert other_body.status_code == 422
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    assert len(model_server.requests) == 1

    model_server.structured(drafts(), model="gpt-4o-mini")  # a new key is a new request: paid again
    fresh = client.post("/api/v1/content/hooks", headers={**AUTH, "Idempotency-Key": "hooks-2"}, json=HOOKS)
    assert fresh.status_code == 200 and len(api_charges(paid_world)) == 2


def test_variations_and_calls_to_action_are_charged_too(paid_world: World, model_server: FakeOpenAI) -> None:
    client = TestClient(create_app(paid_world.settings))
    model_server.structured(drafts(), model="gpt-4o-mini")
    varied = client.post("/api/v1/content/hooks/variations", headers=AUTH, json=PAID_ROUTES[1][1])
    assert varied.status_code == 200, varied.text
    assert varied.json()["source"] == "model"
    model_server.structured(drafts(4), model="gpt-4o-mini")
    ctas = client.post("/api/v1/content/cta", headers=AUTH, json=HOOKS)
    assert ctas.status_code == 200, ctas.text
    assert [c.subject_id for c in api_charges(paid_world)] == ["content/hooks/variations", "content/cta"]
    assert all(c.amount_usd > 0 for c in api_charges(paid_world))


def test_a_failed_model_call_costs_nothing_and_the_offline_writer_is_free(
    paid_world: World, model_server: FakeOpenAI
) -> None:
    client = TestClient(create_app(paid_world.settings))
    model_server.fail(500, "api_error")
    fallback = client.post("/api/v1/content/hooks", headers=AUTH, json=HOOKS)
    assert fallback.status_code == 200 and len(fallback.json()["hooks"]) == 3  # the offline writer's
    assert api_charges(paid_world) == []

    offline = TestClient(create_app(paid_world.settings.model_copy(update={"text_providers": "offline"})))
    assert offline.post("/api/v1/content/hooks", headers=AUTH, json=HOOKS).json()["writer"] == (
        "offline-templates"
    )
    assert api_charges(paid_world) == []


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contentforge.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_migration_0012_admits_api_charges_and_its_downgrade_drops_only_them(db_url: str) -> None:
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from contentforge.db import make_engine, migrate
    from contentforge.db.engine import alembic_config, migration_transaction

    insert = (
        "INSERT INTO cost_entries (step, persona_id, kind, provider, amount_usd, charge_key, created_at) "
        "VALUES (:step, 'ava', 'text', 'openai', 0.01, :key, CURRENT_TIMESTAMP)"
    )
    engine = make_engine(db_url)
    try:
        with migration_transaction(engine) as conn:
            command.upgrade(alembic_config(conn), "0011_dispatch_turns")
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(insert), {"step": "api_hooks", "key": "api:before:1"})
        migrate(db_url)
        with engine.begin() as conn:
            conn.execute(text(insert), {"step": "api_hooks", "key": "api:r1:1"})
            conn.execute(text(insert), {"step": "plan_topics", "key": "topics:1"})
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(insert), {"step": "bogus", "key": "bogus:1"})
        with migration_transaction(engine) as conn:
            command.downgrade(alembic_config(conn), "0011_dispatch_turns")
        with engine.connect() as conn:
            left = conn.execute(text("SELECT step FROM cost_entries ORDER BY id")).scalars().all()
        assert left == ["plan_topics"]
        migrate(db_url)
    finally:
        engine.dispose()
