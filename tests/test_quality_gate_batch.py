"""The quality gate on a batch's hooks and image prompts (issue 19, item 3): bait rewritten, a
failing hook regenerated once (the extra model call charged under its own key) and then replaced
by the offline hook or held, a held hook never published, every verdict stored and read back
(SQLite and PostgreSQL), and migration 0013 up and down keeping the hooks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import test_gallery_browser as gallery
from alembic import command
from pydantic import SecretStr
from sqlalchemy import inspect, select, text
from support.browser import wait
from support.llm_fakes import FakeOpenAI
from support.publishing import T0, bind_verdict, make_world
from test_gallery_browser import browser, server_url, world  # noqa: F401 (the gallery's fixtures)

from contentforge.batch import BatchRequest, plan_pieces, template_by_id, write_piece_hooks
from contentforge.catalog import load_templates
from contentforge.db import PlannedPiece, Repository, make_engine, migrate
from contentforge.db.engine import alembic_config, migration_transaction
from contentforge.db.models import CostEntryORM, PieceORM
from contentforge.domain.models import Hook, HookStyle, ModerationVerdict, Persona, Platform, TierMix, Verdict
from contentforge.publishing.ledger import PublishRefused
from contentforge.quality.batch_gate import check_hook, gate_hooks, gate_image_prompt, gate_summary
from contentforge.quality.gate import engagement_bait
from contentforge.text.hooks import OfflineHookWriter
from contentforge.text.llm_hooks import LlmHookWriter, _styles
from contentforge.text.llm_prompts import ImagePromptOutcome
from contentforge.text.prompts import ImagePrompt, build_image_prompt
from contentforge.text.providers import OfflineEngine, ProviderChain
from contentforge.text.providers.openai_provider import OpenAIProvider
from contentforge_api.queries import ContentQueries
from contentforge_api.schemas import PieceOut

KEY = "sk-gate-test-key-123"
FAST = {"retry_base_s": 0.01, "max_attempts": 1, "timeout_s": 5.0, "prices": {"gpt-test": (0.5, 2.0)}}
TEMPLATE = load_templates()[0]
DEGENERATE = "{product} {product} {product} for your morning 🌅"
BAIT_CTA = "Double tap if you agree! Save this for your next long run."


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gate.db'}"
    return str(request.getfixturevalue("pg_url"))


def model_writer(server: FakeOpenAI) -> LlmHookWriter:
    provider = OpenAIProvider(api_key=SecretStr(KEY), model="gpt-test", base_url=server.url, **FAST)
    return LlmHookWriter(ProviderChain([provider, OfflineEngine()]))


def draft(style: HookStyle, text_: str, cta: str = "Save this for your next long run.") -> dict[str, Any]:
    return {
        "style": style.value,
        "text": text_,
        "call_to_action": cta,
        "hashtags": ["running", "morningrun", "fitness"],
    }


def answer(drafts: list[dict[str, Any]]) -> str:
    return json.dumps({"hooks": drafts})


def good_text(style: HookStyle) -> str:
    return f"A calm sunrise {style.value} about trail running and the quiet before work 🌅"


def piece_world(tmp_path: Path, url: str) -> tuple[Repository, Persona, Any]:
    """A migrated database with one generated piece (no hooks yet) of persona mia."""
    pub = make_world(tmp_path, ["planned"], url=url, hook_platforms=())
    persona = pub.repo.get_persona("mia")
    assert persona is not None
    piece = pub.repo.get_piece(pub.ids("planned")[0])
    assert piece is not None
    return pub.repo, persona, piece


def cost_keys(repo: Repository, piece_id: str) -> list[str]:
    with repo.sessions.read() as session:
        keys = session.scalars(select(CostEntryORM.charge_key).where(CostEntryORM.piece_id == piece_id))
        return sorted(k.split(":")[0] for k in keys if k)


# --- hooks written by a model -------------------------------------------------------------------


def test_model_hooks_with_engagement_bait_are_rewritten_stored_and_read_back(
    tmp_path: Path, db_url: str
) -> None:
    repo, persona, piece = piece_world(tmp_path, db_url)
    styles = _styles(5, piece.seed, persona, template_by_id(piece.template_id))
    with FakeOpenAI(KEY) as server:
        server.text(answer([draft(s, good_text(s), BAIT_CTA) for s in styles]))
        written = write_piece_hooks(piece, persona, Platform.instagram, model_writer(server), repo)
    assert written == 5
    assert len(server.requests) == 1, "a rewrite needs no second model call"
    stored = repo.get_piece(piece.id)
    assert stored is not None
    for hook in stored.hooks:
        assert hook.quality_gate is not None and hook.quality_gate["status"] == "rewritten"
        assert hook.quality_gate["rewritten_from"] == BAIT_CTA
        assert hook.call_to_action == "Save this for your next long run."
        assert not engagement_bait(hook.caption)
    assert cost_keys(repo, piece.id) == ["hooks"]


def test_a_degenerate_model_hook_is_regenerated_once_then_falls_back_and_both_calls_are_charged(
    tmp_path: Path, db_url: str
) -> None:
    repo, persona, piece = piece_world(tmp_path, db_url)
    styles = _styles(5, piece.seed, persona, template_by_id(piece.template_id))
    broken = styles[0]
    first = [draft(s, DEGENERATE if s == broken else good_text(s)) for s in styles]
    with FakeOpenAI(KEY) as server:
        server.text(answer(first))
        server.text(answer([draft(broken, DEGENERATE + " again")]))  # the regeneration is no better
        write_piece_hooks(piece, persona, Platform.instagram, model_writer(server), repo)
    assert len(server.requests) == 2, "exactly one regeneration"
    assert broken.value in server.requests[1].body["messages"][-1]["content"]
    stored = repo.get_piece(piece.id)
    assert stored is not None
    replaced = [h for h in stored.hooks if h.style == broken]
    assert len(replaced) == 1 and "{product}" not in replaced[0].caption
    assert replaced[0].quality_gate == {**replaced[0].quality_gate, "status": "fallback", "attempts": 2}
    offline = OfflineHookWriter().write_hooks(
        persona, TEMPLATE, Platform.instagram, count=12, seed=piece.seed
    )
    assert replaced[0].text in {h.text for h in offline if h.style == broken}, "the offline hook of its style"
    others = [h for h in stored.hooks if h.style != broken]
    assert {h.quality_gate["status"] for h in others if h.quality_gate} == {"passed"}
    assert cost_keys(repo, piece.id) == ["hooks", "hooks-regenerate"]


def test_a_regenerated_model_hook_that_passes_is_kept(tmp_path: Path) -> None:
    persona = Persona(
        id="mia",
        name="Mia",
        niche="fitness",
        appearance="athletic woman",
        personality_traits=["upbeat"],
        interests=["trail running"],
        tone="warm",
        platforms=["instagram"],
    )
    hooks = [
        Hook(style=style, text=body, call_to_action="", hashtags=["run"], platform=Platform.instagram)
        for style, body in ((HookStyle.tip, DEGENERATE), (HookStyle.story, good_text(HookStyle.story)))
    ]
    with FakeOpenAI(KEY) as server:
        server.text(answer([draft(HookStyle.tip, good_text(HookStyle.tip), BAIT_CTA)]))
        gated = gate_hooks(hooks, persona, TEMPLATE, Platform.instagram, model_writer(server), seed=3)
    assert len(server.requests) == 1
    tip = next(h for h in gated.hooks if h.style == HookStyle.tip)
    assert tip.text == good_text(HookStyle.tip) and not engagement_bait(tip.caption), (
        "regenerated, bait rewritten"
    )
    assert tip.quality_gate is not None and tip.quality_gate["status"] == "regenerated"
    assert gated.regeneration is not None and gated.regeneration.result.provider == "openai"


# --- offline hooks ----------------------------------------------------------------------------


class FlawedOfflineWriter(OfflineHookWriter):
    """The offline writer whose tip hook is degenerate for the seeds in ``bad_seeds``."""

    def __init__(self, bad_seeds: set[int]) -> None:
        self.bad_seeds = bad_seeds
        self.seeds: list[int] = []

    def write_hooks(
        self, persona: Persona, template: Any, platform: Platform, *, count: int = 5, seed: int
    ) -> list[Hook]:
        self.seeds.append(seed)
        hooks = super().write_hooks(persona, template, platform, count=count, seed=seed)
        if seed not in self.bad_seeds:
            return hooks
        return [h.model_copy(update={"text": DEGENERATE}) if h.style == HookStyle.tip else h for h in hooks]


def sample_persona() -> Persona:
    return Persona(
        id="mia",
        name="Mia",
        niche="fitness",
        appearance="athletic woman",
        personality_traits=["upbeat"],
        interests=["trail running"],
        tone="warm",
        platforms=["instagram"],
    )


def flawed_hooks(writer: FlawedOfflineWriter, seed: int) -> list[Hook]:
    hooks = writer.write_hooks(sample_persona(), TEMPLATE, Platform.instagram, count=6, seed=seed)
    assert any(not check_hook(h).passed for h in hooks)
    return hooks


def test_an_offline_hook_that_fails_is_rewritten_from_another_seed() -> None:
    writer = FlawedOfflineWriter({1})
    gated = gate_hooks(
        flawed_hooks(writer, 1), sample_persona(), TEMPLATE, Platform.instagram, writer, seed=1
    )
    tip = next(h for h in gated.hooks if h.style == HookStyle.tip)
    assert tip.quality_gate is not None and tip.quality_gate["status"] == "regenerated"
    assert "{product}" not in tip.text and len(writer.seeds) == 2, "one regeneration"
    assert gated.regeneration is None, "nothing to charge offline"


def test_an_offline_hook_that_fails_twice_is_held_for_review_and_moved_last() -> None:
    writer = FlawedOfflineWriter({1, 1 + 7919})
    gated = gate_hooks(
        flawed_hooks(writer, 1), sample_persona(), TEMPLATE, Platform.instagram, writer, seed=1
    )
    held = gated.hooks[-1]
    assert held.style == HookStyle.tip and held.held_by_quality_gate
    assert held.quality_gate is not None and held.quality_gate["attempts"] == 2
    assert [i["rule"] for i in held.quality_gate["issues"]] == ["unfilled_slot"]
    assert not any(h.held_by_quality_gate for h in gated.hooks[:-1])
    assert gate_summary(gated.hooks) == "hooks: 1 needs_review, 5 passed (held: unfilled_slot)"


# --- publishing never picks a held hook ---------------------------------------------------------


def held_and_passed(index: int) -> list[Hook]:
    held = {"kind": "hook", "status": "needs_review", "passed": False, "attempts": 2, "issues": []}
    return [
        Hook(style=HookStyle.tip, text=f"Held hook {index} 💪", call_to_action="", hashtags=["run"],
             platform="instagram", quality_gate=held),
        Hook(style=HookStyle.story, text=f"Passed hook {index} 💪", call_to_action="", hashtags=["run"],
             platform="instagram", quality_gate={"kind": "hook", "status": "passed", "issues": []}),
    ]  # fmt: skip


def test_a_hook_held_by_the_gate_is_never_published(tmp_path: Path, db_url: str) -> None:
    pub = make_world(tmp_path, ["generated", "generated", "generated"], url=db_url, hook_platforms=())
    first, second, third = pub.ids("generated")
    pub.repo.save_hooks(first, held_and_passed(0))  # held first: publishing must skip it
    pub.repo.save_hooks(second, held_and_passed(1)[:1])  # only a held hook
    pub.repo.save_hooks(third, held_and_passed(2))
    for piece_id in (first, second, third):
        pub.repo.save_verdict(piece_id, ModerationVerdict(verdict=Verdict.safe, scores={"sexual": 0.1}))
        bind_verdict(pub.engine, piece_id)

    publication_id, _ = pub.ledger.schedule(first, "instagram", T0, publisher="outbox")
    assert pub.ledger.get(publication_id).caption.startswith("Passed hook 0")
    with pytest.raises(PublishRefused, match="held for review by the quality gate"):
        pub.ledger.schedule(second, "instagram", T0, publisher="outbox")
    held_caption = held_and_passed(2)[0].caption
    with pytest.raises(PublishRefused, match="quality gate marked needs_review"):
        pub.ledger.schedule(third, "instagram", T0, publisher="outbox", caption=held_caption)
    stored = pub.repo.get_piece(first)
    assert stored is not None and [h.held_by_quality_gate for h in stored.hooks] == [True, False]
    # The API (and so the gallery) shows each hook's verdict.
    shown = PieceOut.model_validate(ContentQueries(pub.engine, lambda piece: None).piece(first))
    assert [h.quality_gate["status"] if h.quality_gate else None for h in shown.hooks] == [
        "needs_review",
        "passed",
    ]


# --- image prompts ------------------------------------------------------------------------------


def test_a_model_image_prompt_failing_the_gate_falls_back_to_the_rules_prompt() -> None:
    persona = sample_persona()
    broken = ImagePromptOutcome(
        prompt=ImagePrompt(prompt="athletic woman, {scene}, {scene}, golden light", negative_prompt="nsfw"),
        source="llm",
        prompt_version="image_prompt.v1",
    )
    gated = gate_image_prompt(persona, TEMPLATE, broken)
    assert gated.prompt == build_image_prompt(persona, TEMPLATE)
    assert gated.verdict["status"] == "fallback"
    assert gated.outcome is not None and gated.outcome.source == "rules"
    assert gated.outcome.fallback_reason is not None and "quality gate" in gated.outcome.fallback_reason
    kept = gate_image_prompt(persona, TEMPLATE, None)
    assert kept.verdict["status"] == "passed" and kept.outcome is None


def test_every_planned_prompt_carries_its_verdict_into_the_database(tmp_path: Path, db_url: str) -> None:
    pub = make_world(tmp_path, ["planned"], url=db_url, hook_platforms=())
    persona = pub.repo.get_persona("mia")
    assert persona is not None
    request = BatchRequest(persona, 3, Platform.instagram, TierMix(safe=1.0, suggestive=0.0), seed=4)
    planned = plan_pieces(request, "batch1")
    assert all(
        p.prompt_quality_gate is not None and p.prompt_quality_gate["status"] == "passed" for p in planned
    )
    flagged = PlannedPiece(
        "gate-x", 9, "FIT-001", "safe", "p", "", 9, {"status": "needs_review", "issues": []}
    )
    pub.repo.add_planned_pieces("batch1", [flagged])
    with pub.repo.sessions.read() as session:
        stored = session.scalar(select(PieceORM.prompt_quality_gate).where(PieceORM.id == "gate-x"))
    assert stored == {"status": "needs_review", "issues": []}


# --- migration 0013 -----------------------------------------------------------------------------


def test_migration_0013_up_and_down_keeps_hooks(tmp_path: Path, db_url: str) -> None:
    pub = make_world(tmp_path, ["generated"], url=db_url, hook_platforms=())
    [piece_id] = pub.ids("generated")
    pub.repo.save_hooks(piece_id, held_and_passed(0))
    engine = make_engine(db_url)
    try:
        with migration_transaction(engine) as conn:
            command.downgrade(alembic_config(conn), "0012_api_request_costs")
        assert "quality_gate" not in {c["name"] for c in inspect(engine).get_columns("hooks")}
        assert "prompt_quality_gate" not in {c["name"] for c in inspect(engine).get_columns("pieces")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM hooks")).scalar() == 2
        migrate(db_url)
        stored = Repository(engine).get_piece(piece_id)
        assert stored is not None and [h.text for h in stored.hooks] == [h.text for h in held_and_passed(0)]
        assert [h.quality_gate for h in stored.hooks] == [None, None], "rows from before 0013: not gated"
    finally:
        engine.dispose()


def test_the_review_form_shows_each_pieces_gate_line() -> None:
    from contentforge.moderation.review import ReviewItem
    from flows.review_pieces import review_markdown

    item = ReviewItem("p1", "b1", "mia", "FIT-001", "suggestive", None, {"sexual": 0.4}, [], None, None, T0)
    line = gate_summary(held_and_passed(0), {"status": "passed"})
    assert line == "hooks: 1 needs_review, 1 passed; image prompt: passed"
    table = review_markdown("b1", [item], {"p1": line})
    assert "| quality gate |" in table and line in table


# --- the gallery in a real browser --------------------------------------------------------------


@pytest.mark.slow
def test_the_gallery_shows_each_hooks_gate_verdict_as_text(browser: Any, server_url: str, world: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    hooks = held_and_passed(1)
    hooks[0].quality_gate["issues"] = [{"rule": "unfilled_slot", "detail": "<b>{product}</b>"}]  # type: ignore[index]
    world.repo.save_hooks("b1-001", hooks)
    browser.get(f"{server_url}/gallery/batches/b1")
    gallery._sign_in(browser, gallery.TOKEN)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.piece")) == 6, "no pieces")
    badges = gallery._card(browser, "b1-001").find_elements(By.CSS_SELECTOR, ".hooks .gate")
    assert [b.text for b in badges] == ["gate: needs_review", "gate: passed"]
    assert badges[0].get_attribute("title") == "unfilled_slot: <b>{product}</b>", "issues shown as text"
    assert gallery._card(browser, "b1-000").find_elements(By.CSS_SELECTOR, ".hooks .gate") == []
