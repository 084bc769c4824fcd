"""Strategy steps' model calls in the cost ledger: one entry per paid call, charged to the step and
what it worked on; nothing for the offline engine; and `contentforge costs` sums them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select
from support.brand_site import BrandSite
from support.llm_fakes import FakeAnthropic
from typer.testing import CliRunner

from contentforge.config import Settings, get_settings
from contentforge.db import Repository, make_engine, migrate
from contentforge.db.models import CostEntryORM
from contentforge.domain.strategy import BrandDNA, FieldMethod, found
from contentforge.strategy.costs import StrategyCharge, ledger_listener
from contentforge.strategy.personas import offline_candidates
from contentforge.strategy.topics import plan_topics
from contentforge.text.providers import build_text_provider

PRICE_IN, PRICE_OUT = 2.0, 10.0  # USD per 1M tokens of the fake's model


def usd(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * PRICE_IN + output_tokens * PRICE_OUT) / 1_000_000


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'cf.db'}"
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def entries(engine: Engine) -> list[Any]:
    """The ledger's rows, oldest first."""
    with engine.connect() as conn:
        return list(conn.execute(select(CostEntryORM).order_by(CostEntryORM.id)).all())


def anthropic_settings(fake: FakeAnthropic, providers: str = "anthropic,offline") -> Settings:
    return Settings(
        text_providers=providers,
        anthropic_api_key=SecretStr("test-key"),
        anthropic_base_url=fake.url,
        text_max_attempts=1,
        text_prices={"claude-test": (PRICE_IN, PRICE_OUT)},
    )


def persona():  # type: ignore[no-untyped-def]
    dna = BrandDNA.model_validate(
        {
            "brand": "Trailbean",
            "keywords": found(["coffee", "trail"], "https://t.example/", FieldMethod.inferred),
        }
    )
    return offline_candidates(dna, seed=3)[0].to_persona()


TOPICS = {
    "topics": [
        {"title": "Trail coffee in ten minutes", "angle": "A fast brew on the trail.", "pillar": "how-to",
         "keywords": ["coffee"]},
        {"title": "Why altitude changes your brew", "angle": "Boiling points and taste.",
         "pillar": "education", "keywords": ["altitude"]},
    ]
}  # fmt: skip


def test_a_repaired_answer_is_two_entries_with_the_tokens_and_cost_of_each_call(engine: Engine) -> None:
    repo, who = Repository(engine), persona()
    charge = StrategyCharge("plan_topics", "trailbean", who.id, subject_id="2026-07")
    with FakeAnthropic() as fake:
        fake.text("Here you go: no JSON today", input_tokens=1200, output_tokens=80)
        fake.text(json.dumps(TOPICS), input_tokens=1500, output_tokens=400)
        chain = build_text_provider(anthropic_settings(fake), on_call=ledger_listener(repo, charge))
        outcome = plan_topics(who, "2026-07", chain, count=2)
    assert [t.title for t in outcome.topics] == [t["title"] for t in TOPICS["topics"]]
    rows = entries(engine)
    assert [(r.step, r.brand_id, r.persona_id, r.subject_id, r.batch_id) for r in rows] == [
        ("plan_topics", "trailbean", who.id, "2026-07", None)
    ] * 2
    assert [(r.kind, r.provider) for r in rows] == [("text", "anthropic")] * 2
    assert [(r.detail["input_tokens"], r.detail["output_tokens"]) for r in rows] == [(1200, 80), (1500, 400)]
    assert [r.amount_usd for r in rows] == pytest.approx([usd(1200, 80), usd(1500, 400)])
    assert {r.detail["model"] for r in rows} == {"claude-test"}
    assert {r.detail["prompt_version"] for r in rows} == {"topics.v1"}
    assert outcome.topics[0].source["cost_usd"] == pytest.approx(usd(1200, 80) + usd(1500, 400))


def test_calls_are_charged_even_when_the_step_falls_back_to_the_offline_rules(engine: Engine) -> None:
    repo, who = Repository(engine), persona()
    with FakeAnthropic() as fake:
        fake.text("nope", input_tokens=700, output_tokens=30).text(
            "still nope", input_tokens=900, output_tokens=40
        )
        listener = ledger_listener(
            repo, StrategyCharge("plan_topics", persona_id=who.id, subject_id="2026-08")
        )
        outcome = plan_topics(who, "2026-08", build_text_provider(anthropic_settings(fake), on_call=listener))
    assert outcome.topics[0].source["provider"] == "offline", "the offline engine wrote the plan"
    rows = entries(engine)
    assert [(r.detail["input_tokens"], r.detail["output_tokens"]) for r in rows] == [(700, 30), (900, 40)]
    assert sum(r.amount_usd for r in rows) == pytest.approx(usd(700, 30) + usd(900, 40))


def test_the_offline_engine_writes_no_entry(engine: Engine) -> None:
    repo, who = Repository(engine), persona()
    listener = ledger_listener(repo, StrategyCharge("plan_topics", persona_id=who.id))
    chain = build_text_provider(Settings(text_providers="offline"), on_call=listener)
    assert plan_topics(who, "2026-07", chain).topics
    assert entries(engine) == []


@pytest.fixture
def env(settings_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropic]:
    """Every strategy task's configuration pointing at one fake Anthropic, and no Prefect slot."""
    from tasks import resources

    with FakeAnthropic() as fake:
        for name, value in {
            "CONTENTFORGE_TEXT_PROVIDERS": "anthropic,offline",
            "CONTENTFORGE_ANTHROPIC_API_KEY": "test-key",
            "CONTENTFORGE_ANTHROPIC_BASE_URL": fake.url,
            "CONTENTFORGE_TEXT_MAX_ATTEMPTS": "1",
            "CONTENTFORGE_TEXT_PRICES": json.dumps({"claude-test": [PRICE_IN, PRICE_OUT]}),
            "CONTENTFORGE_RESEARCH_ALLOW_PRIVATE": "1",
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        # The LLM slot is the flows' business (tests/test_strategy_flows.py); here the calls run directly.
        monkeypatch.setattr(resources, "run_llm", lambda fn: fn())
        yield fake
    get_settings.cache_clear()


def test_every_strategy_task_charges_its_calls_to_its_step(env: FakeAnthropic) -> None:
    """Each step gets two unusable answers (first try and repair), so each falls back to the offline
    rules; distinct token counts per step show which call went where."""
    from tasks import resources
    from tasks.strategy import (
        derive_posts,
        propose_persona_candidates,
        propose_topics,
        research_dna,
        save_dna,
        save_personas,
        set_post_status,
        set_topic_status,
        store,
        write_post_draft,
    )

    def answers(step: int) -> None:
        env.text("not json", input_tokens=1000 * step, output_tokens=10 * step)
        env.text("not json either", input_tokens=1000 * step + 1, output_tokens=10 * step + 1)

    with BrandSite(big_bytes=1000) as site:
        answers(1)
        dna = research_dna.fn("Trailbean", [site.url + "/"], [])
    save_dna.fn("Trailbean", dna, site.url + "/")
    answers(2)
    candidates = propose_persona_candidates.fn("trailbean", 6, 0)
    persona_id = save_personas.fn("trailbean", candidates[:3])[0]
    answers(3)
    topic_id = propose_topics.fn(persona_id, "2026-07", 2, 0, "trailbean")[0]["id"]
    set_topic_status.fn([topic_id], "approved")
    answers(4)
    post_id = write_post_draft.fn(topic_id, 4, 0)["id"]
    set_post_status.fn(post_id, "approved", "ana", None)
    answers(5)
    derive_posts.fn(post_id, ["x"])
    assert not env.replies, "every scripted answer was asked for"

    rows = entries(resources.repository().engine)
    expected = [
        ("research_brand", "trailbean", None, None),
        ("propose_personas", "trailbean", None, None),
        ("plan_topics", "trailbean", persona_id, "2026-07"),
        ("write_blog_post", "trailbean", persona_id, post_id),
        ("derive_social_posts", "trailbean", persona_id, post_id),
    ]
    assert [(r.step, r.brand_id, r.persona_id, r.subject_id) for r in rows] == [
        e for e in expected for _ in "12"
    ]
    assert all(r.batch_id is None and r.kind == "text" and r.provider == "anthropic" for r in rows)
    tokens = [(r.detail["input_tokens"], r.detail["output_tokens"]) for r in rows]
    assert tokens == [pair for s in range(1, 6) for pair in ((1000 * s, 10 * s), (1000 * s + 1, 10 * s + 1))]
    assert [r.amount_usd for r in rows] == pytest.approx([usd(*pair) for pair in tokens])
    assert [r.detail["prompt_version"] for r in rows[::2]] == [
        "brand_dna.v1", "personas.v1", "topics.v1", "blog_post.v1", "social_posts.v1"
    ]  # fmt: skip
    assert store().get_blog_post(post_id).source["provider"] == "offline"


def test_costs_command_sums_batches_and_strategy_steps(settings_env: Path) -> None:
    from contentforge_cli.main import app
    from tasks import resources

    repo = resources.repository()
    repo.add_strategy_cost("research_brand", provider="anthropic", amount_usd=0.0125, brand_id="acme",
                           detail={"input_tokens": 4000, "output_tokens": 500, "calls": 1})  # fmt: skip
    repo.add_strategy_cost("write_blog_post", provider="openai", amount_usd=0.5, persona_id="zoe",
                           detail={"input_tokens": 10, "output_tokens": 90000, "calls": 1})  # fmt: skip
    runner = CliRunner()
    done = runner.invoke(app, ["costs"])
    assert done.exit_code == 0, done.output
    lines = [" ".join(line.replace("│", " ").split()) for line in done.output.splitlines()]
    assert "research_brand 1 4000 500 0.0125" in lines
    assert "write_blog_post 1 10 90000 0.5000" in lines
    assert "total: 0.5125 USD" in lines
    unknown = runner.invoke(app, ["costs", "--persona", "nobody"])
    assert unknown.exit_code == 2 and "unknown persona 'nobody'" in unknown.output
