"""The strategy flows on a real Prefect server: research a local site, approve personas, topics and a post."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.brand_site import BrandSite

from contentforge.config import get_settings
from contentforge.domain.strategy import ApprovalStatus
from contentforge.strategy.personas import offline_candidates
from contentforge.text.platform_rules import check_caption
from tasks import resources
from tasks.strategy import store

pytestmark = pytest.mark.slow


@pytest.fixture
def env(settings_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BrandSite]:
    monkeypatch.setenv("CONTENTFORGE_RESEARCH_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("CONTENTFORGE_TEXT_PROVIDERS", "offline")
    get_settings.cache_clear()
    with BrandSite(big_bytes=1000) as site:
        yield site
    get_settings.cache_clear()


def _paused_run_id(flow_name: str, parameter: str, value: Any, deadline_s: float = 90.0) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + deadline_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
                sort=FlowRunSort.START_TIME_DESC,
                limit=20,
            )
            for run in runs:
                if run.parameters.get(parameter) == value:
                    time.sleep(1.0)  # the input schema is saved right after the Paused state
                    return run.id
            time.sleep(0.3)
    raise AssertionError(f"no paused {flow_name} run with {parameter}={value}")


def _start(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _finish(thread: threading.Thread, result: dict[str, Any]) -> Any:
    thread.join(timeout=120)
    assert not thread.is_alive(), "flow did not finish"
    if "error" in result:
        raise result["error"]
    return result["value"]


def _research(site: BrandSite, name: str = "Trailbean", path: str = "/") -> dict[str, Any]:
    from flows.research_brand import research_brand

    return research_brand(name, [site.url + path])


def test_research_flow_saves_a_sourced_dna(env: BrandSite, prefect_server: str) -> None:
    summary = _research(env)
    assert summary["brand_id"] == "trailbean" and len(summary["known"]) >= 20
    assert len(summary["known"]) + len(summary["unknown"]) >= 30
    _, _, dna = store().get_brand("Trailbean")
    assert dna is not None and dna.mission.source == env.url + "/" and dna.vision.source == env.url + "/about"

    tea = _research(env, "Nightjar", "/tea")
    _, _, tea_dna = store().get_brand("nightjar")
    assert tea_dna is not None and tea_dna.mission.status == "unknown"
    assert any("instructions to an AI" in w for w in tea["warnings"])


def test_research_flow_refuses_a_private_address(
    env: BrandSite, prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contentforge.research.errors import AddressRefused
    from flows.research_brand import research_brand

    monkeypatch.setenv("CONTENTFORGE_RESEARCH_ALLOW_PRIVATE", "0")
    get_settings.cache_clear()
    before = len(env.requests)
    with pytest.raises(AddressRefused, match="non-public"):
        research_brand("Local", [env.url + "/"])
    assert len(env.requests) == before


def test_create_personas_pauses_and_saves_the_selection_with_edits(
    env: BrandSite, prefect_server: str
) -> None:
    from prefect.flow_runs import resume_flow_run

    from flows.create_personas import create_personas

    _research(env)
    thread, result = _start(create_personas, "trailbean", seed=4, timeout_s=120, poll_interval_s=1)
    run_id = _paused_run_id("create-personas", "brand", "trailbean")
    repo = resources.repository()
    assert repo.list_personas() == [], "nothing is saved while paused"
    _, _, dna = store().get_brand("trailbean")
    assert dna is not None
    candidates = [c.id for c in offline_candidates(dna, seed=4)]  # the offline chain proposes exactly these
    chosen = candidates[1:5]
    resume_flow_run(
        run_id,
        run_input={
            "selected": [*chosen, "nobody"],
            "edits": [{"id": chosen[0], "tone": "dry and funny", "timezone": "Europe/Berlin"},
                      {"id": chosen[1], "timezone": "Mars/Base"}],
            "reviewer": "ana",
        },
    )  # fmt: skip
    summary = _finish(thread, result)
    assert summary["saved"] == chosen and summary["timed_out"] is False
    assert any("nobody" in e for e in summary["errors"]) and any(
        "Mars" in e or "timezone" in e for e in summary["errors"]
    )
    saved = {p.id: p for p in repo.list_personas()}
    assert set(saved) == set(chosen)
    assert saved[chosen[0]].tone == "dry and funny" and saved[chosen[0]].timezone == "Europe/Berlin"
    assert store().personas_of("trailbean") == sorted(chosen)


def test_create_personas_timeout_saves_the_default_first_three(env: BrandSite, prefect_server: str) -> None:
    from flows.create_personas import create_personas

    _research(env)
    summary = create_personas("trailbean", seed=2, timeout_s=3, poll_interval_s=1)
    assert summary["timed_out"] is True and summary["saved"] == summary["candidates"][:3]
    assert len(summary["candidates"]) == 6
    assert sorted(p.id for p in resources.repository().list_personas()) == sorted(summary["candidates"][:3])


def test_topics_post_and_social_posts_with_approvals(env: BrandSite, prefect_server: str) -> None:
    from prefect.flow_runs import resume_flow_run

    from flows.create_personas import create_personas
    from flows.derive_social_posts import derive_social_posts
    from flows.plan_topics import plan_topics
    from flows.write_blog_post import write_blog_post

    _research(env)
    persona_id = create_personas("trailbean", seed=1, timeout_s=2, poll_interval_s=1)["saved"][0]

    thread, result = _start(
        plan_topics, persona_id, "2026-07", "trailbean", count=4, timeout_s=120, poll_interval_s=1
    )
    run_id = _paused_run_id("plan-topics", "persona_id", persona_id)
    proposed = store().topics(persona_id=persona_id, month="2026-07")
    assert len(proposed) == 4 and all(t.status is ApprovalStatus.proposed for t in proposed)
    resume_flow_run(run_id, run_input={"approved": [proposed[0].id, proposed[2].id], "reviewer": "ana"})
    topics = _finish(thread, result)
    assert topics["approved"] == [proposed[0].id, proposed[2].id]
    assert [t.id for t in store().topics(status="rejected")] == [proposed[1].id, proposed[3].id]

    thread, result = _start(write_blog_post, proposed[0].id, target_pages=6, timeout_s=120, poll_interval_s=1)
    run_id = _paused_run_id("write-blog-post", "topic_id", proposed[0].id)
    post_id = store().topics(status="approved")[0].id
    draft = store().get_blog_post(f"post-{post_id}")
    # offline (no model configured) the step writes a labelled brief, not a 6-page post (issue 19)
    assert draft.status is ApprovalStatus.proposed and draft.source["kind"] == "brief"
    assert draft.markdown.startswith("# BRIEF, not a finished post") and "target 6 A4 pages" in draft.markdown
    resume_flow_run(run_id, run_input={"approve": True, "reviewer": "ben", "markdown": "too short"})
    post = _finish(thread, result)
    assert post["status"] == "approved" and post["edited"] is False and "not saved" in post["error"]
    assert store().get_blog_post(post["post_id"]).status is ApprovalStatus.approved

    social = derive_social_posts(post["post_id"], ["instagram", "x", "linkedin"])
    assert set(social["posts"]) == {"instagram", "x", "linkedin"}
    for saved in store().social_posts(post["post_id"]):
        assert check_caption(saved.text, saved.hashtags, saved.platform) == []

    with pytest.raises(Exception, match="approve it first"):
        write_blog_post(proposed[1].id, timeout_s=2)


def test_cli_brand_research_show_and_random_persona(env: BrandSite, prefect_server: str) -> None:
    from typer.testing import CliRunner

    from contentforge_cli.main import app

    runner = CliRunner()
    done = runner.invoke(app, ["brand", "research", "Trailbean", "--url", env.url + "/"])
    assert done.exit_code == 0, done.output
    assert "saved brand trailbean" in done.output and "mission" in done.output
    shown = runner.invoke(app, ["brand", "show", "trailbean"])
    assert shown.exit_code == 0 and "Leave no trace" in shown.output
    assert runner.invoke(app, ["brand", "show", "nobody"]).exit_code == 2
    assert runner.invoke(app, ["brand", "research", "X"]).exit_code == 2

    made = runner.invoke(app, ["personas", "random", "--type", "fitness", "--seed", "3", "--save"])
    assert made.exit_code == 0, made.output
    assert "niche: fitness" in made.output and "saved persona" in made.output
    saved = resources.repository().list_personas()
    assert [p.niche for p in saved] == ["fitness"]
    bad = runner.invoke(app, ["personas", "random", "--type", "underwater basket weaving"])
    assert bad.exit_code == 2 and "unknown persona type" in bad.output


def test_research_flow_charges_its_model_calls_to_the_ledger(
    env: BrandSite, prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through Prefect (and the 'llm' slot), each paid call lands in the ledger charged to the brand."""
    from sqlalchemy import select
    from support.llm_fakes import FakeAnthropic

    from contentforge.db.models import CostEntryORM

    with FakeAnthropic() as fake:
        monkeypatch.setenv("CONTENTFORGE_TEXT_PROVIDERS", "anthropic,offline")
        monkeypatch.setenv("CONTENTFORGE_ANTHROPIC_API_KEY", "test-key")
        monkeypatch.setenv("CONTENTFORGE_ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("CONTENTFORGE_TEXT_MAX_ATTEMPTS", "1")
        monkeypatch.setenv("CONTENTFORGE_TEXT_PRICES", '{"claude-test": [3.0, 15.0]}')
        get_settings.cache_clear()
        fake.text("no JSON here", input_tokens=2000, output_tokens=100)
        fake.text("nor here", input_tokens=2500, output_tokens=50)
        summary = _research(env)
    assert summary["extractor"] == "heuristic", "the model never validated, so the rules answered"
    with resources.repository().engine.connect() as conn:
        rows = conn.execute(select(CostEntryORM).order_by(CostEntryORM.id)).all()
    assert [(r.step, r.brand_id, r.batch_id, r.provider) for r in rows] == [
        ("research_brand", "trailbean", None, "anthropic")
    ] * 2
    assert [r.amount_usd for r in rows] == pytest.approx(
        [(2000 * 3 + 100 * 15) / 1e6, (2500 * 3 + 50 * 15) / 1e6]
    )
