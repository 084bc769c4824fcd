"""Model-written image prompts in batch planning (source recorded, cost charged, per-piece fallback)
and the LLM concurrency slot around model calls made from tasks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.llm_fakes import FakeOpenAI

from contentforge.catalog import load_templates
from contentforge.config import get_settings
from contentforge.db.models import BatchORM, CostEntryORM
from contentforge.domain.models import LoraSpec, Persona
from contentforge.text.prompt_sources import prompt_sources
from contentforge.text.prompts import SAFETY_NEGATIVES, build_image_prompt
from tasks import planning, resources

KEY = "sk-planning-test-key-123"


def words(n: int) -> str:
    filler = [
        "soft",
        "morning",
        "light",
        "over",
        "a",
        "quiet",
        "city",
        "rooftop",
        "with",
        "warm",
        "golden",
        "tones",
        "and",
        "gentle",
        "haze",
    ]
    return " ".join(filler[i % len(filler)] for i in range(n))


PERSONA = Persona(
    id="maya-lin-01",
    name="Maya Lin",
    niche="fitness",
    appearance="athletic woman in her late twenties with shoulder-length dark hair",
    personality_traits=["disciplined", "playful"],
    interests=["trail running", "meal prep"],
    tone="warm, upbeat and encouraging",
    platforms=["instagram"],
    lora=LoraSpec(source="acme/maya-lin-lora", trigger_word="mayalin"),
)


@pytest.fixture
def openai_env(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: str
) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(KEY) as server:
        monkeypatch.setenv("CONTENTFORGE_TEXT_PROVIDERS", "openai")
        monkeypatch.setenv("CONTENTFORGE_OPENAI_API_KEY", KEY)
        monkeypatch.setenv("CONTENTFORGE_OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("CONTENTFORGE_OPENAI_MODEL", "gpt-4o-mini")
        monkeypatch.setenv("CONTENTFORGE_TEXT_MAX_ATTEMPTS", "1")
        monkeypatch.setenv("CONTENTFORGE_TEXT_RETRY_BASE_S", "0")
        get_settings.cache_clear()
        yield server
        get_settings.cache_clear()


def plan(batch_id: str, num_pieces: int) -> list[str]:
    repo = resources.repository()
    repo.upsert_persona(PERSONA)
    request = planning.validate_request.fn(
        persona=PERSONA.id, num_pieces=num_pieces, platform="instagram", tier_mix=None, seed=7
    )
    planning.take_batch.fn(request, batch_id, None, owner="test")
    return planning.select_templates_and_prompts.fn(request, batch_id)


def text_costs(batch_id: str) -> list[CostEntryORM]:
    with Session(resources.repository().engine) as session:
        return list(
            session.scalars(
                select(CostEntryORM).where(CostEntryORM.batch_id == batch_id, CostEntryORM.kind == "text")
            )
        )


def test_planned_pieces_get_the_model_prompt_its_source_and_cost(openai_env: FakeOpenAI) -> None:
    model_text = words(120)
    for _ in range(2):
        openai_env.text(
            json.dumps({"prompt": model_text, "negative_terms": ["crowds"]}),
            input_tokens=400,
            output_tokens=250,
            model="gpt-4o-mini",
        )
    ids = plan("b-llm", 2)
    pieces = {p.id: p for p in resources.repository().pieces(batch_id="b-llm")}
    assert len(openai_env.requests) == 2 and set(pieces) == set(ids)
    for piece in pieces.values():
        assert piece.prompt == f"mayalin, {model_text}"
        assert piece.negative_prompt.startswith(SAFETY_NEGATIVES) and piece.negative_prompt.endswith("crowds")
    assert prompt_sources(resources.repository(), "b-llm") == dict.fromkeys(ids, "llm")
    costs = text_costs("b-llm")
    assert sorted(c.piece_id for c in costs) == sorted(ids)
    assert all(c.provider == "openai" and c.amount_usd > 0 for c in costs)
    assert costs[0].detail["prompt_version"] == "image_prompt.v1" and costs[0].detail["tokens"] == 650
    assert KEY not in json.dumps([c.detail for c in costs])

    # a retried planning step keeps the pieces and pays for nothing again
    plan("b-llm", 2)
    assert len(openai_env.requests) == 2 and len(text_costs("b-llm")) == 2


def test_a_provider_failure_falls_back_to_the_template_prompt_for_that_piece(openai_env: FakeOpenAI) -> None:
    model_text = words(120)
    openai_env.text(json.dumps({"prompt": model_text}), model="gpt-4o-mini")
    openai_env.fail(401, "invalid_request_error", "Incorrect API key provided")
    ids = plan("b-mixed", 2)
    pieces = {p.id: p for p in resources.repository().pieces(batch_id="b-mixed")}
    templates = {t.id: t for t in load_templates()}
    first, second = (pieces[i] for i in ids)
    assert first.prompt == f"mayalin, {model_text}"
    rules = build_image_prompt(PERSONA, templates[second.template_id])
    assert (second.prompt, second.negative_prompt) == (rules.prompt, rules.negative_prompt)
    assert prompt_sources(resources.repository(), "b-mixed") == {ids[0]: "llm", ids[1]: "rules"}
    fell_back = resources.repository().get_piece(ids[1])  # the reason is kept beside the source
    with Session(resources.repository().engine) as session:
        params = session.get(BatchORM, "b-mixed").params
    assert fell_back.prompt_fallback and KEY not in fell_back.prompt_fallback + json.dumps(params)
    assert [c.piece_id for c in text_costs("b-mixed")] == [ids[0]]


def test_offline_planning_uses_the_rules_and_records_no_source(settings_env: Path) -> None:
    ids = plan("b-offline", 2)
    assert prompt_sources(resources.repository(), "b-offline") == {}
    templates = {t.id: t for t in load_templates()}
    for piece in resources.repository().pieces(batch_id="b-offline"):
        assert piece.id in ids
        assert piece.prompt == build_image_prompt(PERSONA, templates[piece.template_id]).prompt
    assert text_costs("b-offline") == []


HOOKS = json.dumps(
    {
        "hooks": [
            {
                "style": style,
                "text": f"A {style} hook about the sunrise run",
                "call_to_action": "Tell me below",
                "hashtags": ["#fitness", "#running"],
            }
            for style in ("question", "challenge", "story", "tip", "teaser")
        ]
    }
)


def test_hook_task_holds_an_llm_slot_when_a_model_is_configured(
    openai_env: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import text

    monkeypatch.setenv("CONTENTFORGE_LLM_CONCURRENCY_LIMIT_NAME", f"llm-test-{uuid.uuid4().hex[:8]}")
    get_settings.cache_clear()
    for _ in range(2):
        openai_env.text(json.dumps({"prompt": words(120)}), model="gpt-4o-mini")
    ids = plan("b-hooks", 2)
    dispatcher = resources.llm_dispatcher()
    assert dispatcher.leases_taken == 1  # the planning step's prompts, in one slot
    deadline = time.monotonic() + 10  # let the planning lease end (it lingers briefly for more work)
    while dispatcher._holders and time.monotonic() < deadline:
        time.sleep(0.1)
    openai_env.text(HOOKS, model="gpt-4o-mini")
    assert text.write_hooks.fn([ids[0]], "instagram") == 5
    assert dispatcher.leases_taken == 2
    assert len(openai_env.requests) == 3  # the hook writer did ask the model, from inside the slot
    assert len(resources.repository().get_piece(ids[0]).hooks) == 5


def test_offline_hook_task_takes_no_llm_slot(settings_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks import text

    name = f"llm-offline-{uuid.uuid4().hex[:8]}"  # no server runs here: a slot would fail loudly
    monkeypatch.setenv("CONTENTFORGE_LLM_CONCURRENCY_LIMIT_NAME", name)
    get_settings.cache_clear()
    ids = plan("b-offline-hooks", 1)
    assert text.write_hooks.fn([ids[0]], "instagram") == 5
    assert resources.llm_dispatcher().leases_taken == 0 and not resources.llm_in_use()
