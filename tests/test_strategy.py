"""Strategy: persona candidates, random personas, topics, blog posts, social posts and their storage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr
from support.llm_fakes import FakeAnthropic, FakeOpenAI

from contentforge.config import Settings
from contentforge.db import Repository, make_engine, migrate
from contentforge.domain.models import PLATFORMS, Platform
from contentforge.domain.strategy import (
    ApprovalStatus,
    BrandDNA,
    FieldMethod,
    found,
)
from contentforge.errors import InvalidInput
from contentforge.strategy.blog import write_blog_post
from contentforge.strategy.personas import offline_candidates, propose_personas, random_persona
from contentforge.strategy.social import derive_social_posts
from contentforge.strategy.store import StrategyStore
from contentforge.strategy.topics import parse_month, plan_topics
from contentforge.text.platform_rules import check_caption, count_emoji, rules_for
from contentforge.text.providers import build_text_provider

SRC = "https://trailbean.example/"


def dna() -> BrandDNA:
    f = FieldMethod.extracted
    return BrandDNA.model_validate(
        {
            "brand": "Trailbean",
            "mission": found("To fuel every adventure with great coffee", SRC, f),
            "values": found(["Leave no trace", "Fair prices"], SRC, f),
            "products": found(["Summit Espresso Blend - $18.00", "Basecamp Instant Sticks"], SRC, f),
            "keywords": found(["coffee", "trail", "hiking", "camp", "brew"], SRC, FieldMethod.inferred),
            "industry": found("outdoors", SRC, FieldMethod.inferred),
            "audience_segments": found(["hikers", "climbers"], SRC, f),
            "languages": found(["de"], SRC, f),
            "calls_to_action": found(["Shop the range"], SRC, f),
        }
    )


# --- personas ---------------------------------------------------------------------------------------


def test_six_offline_candidates_are_valid_distinct_varied_and_deterministic() -> None:
    candidates = offline_candidates(dna(), seed=7)
    assert len(candidates) == 6
    assert len({c.id for c in candidates}) == 6 and len({c.name for c in candidates}) == 6
    assert len({c.appearance for c in candidates}) == 6
    assert len({c.niche for c in candidates}) >= 3, "candidates span several niches"
    assert candidates[0].niche == "outdoors", "the DNA's industry leads"
    for c in candidates:
        persona = c.to_persona()
        assert persona.timezone in {"Europe/Berlin", "Europe/Vienna", "Europe/Zurich"}, "from the language"
        assert len(c.personality_traits) >= 3 and len(c.interests) >= 3 and c.platforms
        assert c.age is not None and c.age >= 18
    interests = {i for c in candidates for i in c.interests}
    assert interests & {
        "coffee",
        "trail",
        "hiking",
        "camp",
        "brew",
        "summit espresso blend",
        "basecamp instant sticks",
    }
    assert offline_candidates(dna(), seed=7) == candidates
    assert offline_candidates(dna(), seed=8) != candidates


def test_random_persona_by_type_hint() -> None:
    fit = random_persona("fitness", seed=1)
    assert fit.niche == "fitness" and fit.to_persona().niche == "fitness"
    assert random_persona("fitness", seed=1) == fit and random_persona("fitness", seed=2) != fit
    assert random_persona("Tech", seed=3).niche == "tech"
    assert random_persona("running", seed=3).niche == "fitness", "a keyword maps to its niche"
    with pytest.raises(InvalidInput, match="unknown persona type"):
        random_persona("underwater basket weaving")


def test_personas_from_a_model_and_fallback_when_invalid() -> None:
    good = offline_candidates(dna(), seed=1)
    answer = {
        "candidates": [
            c.model_dump(mode="json") | {"name": f"Model {i}", "id": f"model-{i}"} for i, c in enumerate(good)
        ]
    }
    with FakeOpenAI() as fake:
        fake.text(json.dumps(answer))
        fake.text(json.dumps({"candidates": [good[0].model_dump(mode="json") | {"timezone": "Mars/Base"}]}))
        fake.text("still not json")
        settings = Settings(text_providers="openai,offline", openai_api_key=SecretStr("test-key"),
                            openai_base_url=fake.url, text_max_attempts=1)  # fmt: skip
        chain = build_text_provider(settings)
        outcome = propose_personas(dna(), chain, seed=1)
        assert [c.name for c in outcome.candidates] == [f"Model {i}" for i in range(6)]
        assert outcome.result is not None and outcome.result.provider == "openai"
        assert "Trailbean" in fake.prompts[0] and "mission: To fuel every adventure" in fake.prompts[0]
        fallback = propose_personas(dna(), chain, seed=1)
    assert fallback.result is not None and fallback.result.provider == "offline"
    assert fallback.candidates == good


# --- topics and blog posts ------------------------------------------------------------------------


def _persona():  # type: ignore[no-untyped-def]
    return offline_candidates(dna(), seed=3)[0].to_persona()


def test_offline_topics_are_distinct_and_use_the_dna() -> None:
    topics = plan_topics(_persona(), "2026-07", None, dna=dna(), count=6, brand_id="trailbean").topics
    assert len({t.title for t in topics}) == 6 and len({t.id for t in topics}) == 6
    assert all(
        t.month == "2026-07" and t.status is ApprovalStatus.proposed and t.brand_id == "trailbean"
        for t in topics
    )
    assert len({t.pillar for t in topics}) >= 3
    text = json.dumps([t.model_dump(mode="json") for t in topics]).lower()
    assert "summit espresso blend" in text or "coffee" in text or "trail" in text
    with pytest.raises(InvalidInput, match="YYYY-MM"):
        plan_topics(_persona(), "July", None)


def test_parse_month_accepts_only_yyyy_mm() -> None:
    assert parse_month("2026-07") == (2026, 7) and parse_month("1999-12") == (1999, 12)
    for bad in ("2026-13", "2026-00", "2026-7", "26-07", "2026-+7", " 2026-07", "2026-07-01", "July"):
        with pytest.raises(InvalidInput, match=r"month must be YYYY-MM, got"):
            parse_month(bad)


@pytest.mark.parametrize("pages", [4, 10])
def test_offline_blog_step_writes_a_labelled_brief_not_filler_prose(pages: int) -> None:
    """Issue 19: offline, no prose pretends to be a post; the brief carries the DNA's facts."""
    persona = _persona()
    topic = plan_topics(persona, "2026-07", None, dna=dna(), count=2).topics[1]
    post = write_blog_post(topic, persona, None, dna=dna(), target_pages=pages).post
    assert post.markdown.startswith(f"# BRIEF, not a finished post: {topic.title}")
    assert post.source["kind"] == "brief" and post.source["needs_model"] is True
    assert "needs a model" in post.source["note"] and f"target {pages} A4 pages" in post.markdown
    sections = [line for line in post.markdown.splitlines() if line.startswith("## ")]
    assert sections == [
        "## Angle", "## Key points", "## Product facts", "## Suggested sections", "## Call to action",
        "## What to do next",
    ]  # fmt: skip
    assert (
        "- **Summit Espresso Blend**: $18.00" in post.markdown
        and "- **Basecamp Instant Sticks**" in post.markdown
    )
    assert "(DNA `mission`, https://trailbean.example/)" in post.markdown
    assert "Shop the range" in post.markdown
    assert post.source["quality_gate"]["passed"], post.source["quality_gate"]
    assert write_blog_post(topic, persona, None, dna=dna(), target_pages=pages).post == post


def test_blog_target_outside_bounds_is_refused() -> None:
    persona = _persona()
    topic = plan_topics(persona, "2026-07", None, count=1).topics[0]
    for pages in (3, 11):
        with pytest.raises(InvalidInput, match="4-10"):
            write_blog_post(topic, persona, None, target_pages=pages)


def test_a_too_short_model_post_is_repaired_once_then_the_offline_writer_takes_over() -> None:
    persona = _persona()
    topic = plan_topics(persona, "2026-07", None, count=1).topics[0]
    short = json.dumps(
        {"title": "Short", "markdown": "# Short\n\n## A\n\ntext\n\n## B\n\nmore\n\n## C\n\nend " * 3}
    )
    with FakeAnthropic() as fake:
        fake.text(short).text(short)
        settings = Settings(text_providers="anthropic,offline", anthropic_api_key=SecretStr("test-key"),
                            anthropic_base_url=fake.url, text_max_attempts=1)  # fmt: skip
        outcome = write_blog_post(topic, persona, build_text_provider(settings), target_pages=4)
        assert len(fake.requests) == 2 and "words" in fake.prompts[1] and "2000-5000" in fake.prompts[1]
    assert outcome.post.source["provider"] == "offline" and outcome.post.source["kind"] == "brief"
    long_md = "# Long\n\n" + "".join(f"## Part {i}\n\n" + "word " * 300 + "\n\n" for i in range(8))
    with FakeAnthropic() as fake:
        fake.text(json.dumps({"title": "Long read", "markdown": long_md}), output_tokens=4000)
        settings = Settings(text_providers="anthropic,offline", anthropic_api_key=SecretStr("test-key"),
                            anthropic_base_url=fake.url, text_max_attempts=1)  # fmt: skip
        outcome = write_blog_post(topic, persona, build_text_provider(settings), target_pages=5)
    assert outcome.post.source["provider"] == "anthropic" and outcome.post.word_count == 2400 + 1 + 16
    gate = outcome.post.source["quality_gate"]
    found = {i["rule"]: i["detail"] for i in gate["issues"]}
    assert gate["status"] == "needs_review" and "stuttered word" in found["unfilled_slot"], gate
    assert found["named"] == "names none of 'Leo North'", "a post for no brand names its persona"


# --- social posts ---------------------------------------------------------------------------------


def test_offline_social_posts_obey_every_platform_rule() -> None:
    persona = _persona()
    topic = plan_topics(persona, "2026-07", None, dna=dna(), count=1).topics[0]
    post = write_blog_post(topic, persona, None, dna=dna()).post
    posts = derive_social_posts(post, persona, list(PLATFORMS), None, topic=topic).posts
    assert [p.platform.value for p in posts] == list(PLATFORMS)
    for p in posts:
        assert check_caption(p.text, p.hashtags, p.platform) == [], p.platform
        rules = rules_for(p.platform)
        assert rules.emoji_min <= count_emoji(p.caption) <= rules.emoji_max
        assert len(p.hashtags) <= rules.max_hashtags
        assert topic.title.split()[0] in p.text
        assert p.source["quality_gate"]["passed"], (p.platform, p.source["quality_gate"])


def test_model_social_posts_are_fitted_or_replaced() -> None:
    persona = _persona()
    topic = plan_topics(persona, "2026-07", None, count=1).topics[0]
    post = write_blog_post(topic, persona, None).post
    answer = {
        "posts": [
            {
                "platform": "x",
                "text": "A very long hook " * 30 + "🔥🔥🔥 #coffee #trail #camp #more",
                "hashtags": ["one"],
            },
            {"platform": "tiktok", "text": "Short hook with no emoji", "hashtags": "#a #b #c #d #e #f #g"},
            {"platform": "instagram", "text": "   ", "hashtags": []},
        ]
    }
    with FakeOpenAI() as fake:
        fake.text(json.dumps(answer))
        settings = Settings(text_providers="openai,offline", openai_api_key=SecretStr("test-key"),
                            openai_base_url=fake.url, text_max_attempts=1)  # fmt: skip
        outcome = derive_social_posts(
            post, persona, [Platform.x, Platform.tiktok, Platform.instagram], build_text_provider(settings)
        )
    by = {p.platform: p for p in outcome.posts}
    for p in outcome.posts:
        assert check_caption(p.text, p.hashtags, p.platform) == [], (p.platform, p.caption)
    assert by[Platform.x].source["provider"] == "openai" and by[Platform.x].text.startswith(
        "A very long hook"
    )
    assert count_emoji(by[Platform.x].caption) <= 1 and len(by[Platform.x].hashtags) <= 2
    assert by[Platform.tiktok].source["provider"] == "openai" and count_emoji(by[Platform.tiktok].text) >= 3
    assert len(by[Platform.tiktok].hashtags) == 5
    assert by[Platform.instagram].source["provider"] == "offline", "an empty caption falls back"
    assert outcome.offline_platforms == [Platform.instagram]


# --- storage ----------------------------------------------------------------------------------------


def test_store_round_trip(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cf.db'}"
    migrate(url)
    engine = make_engine(url)
    repo, store = Repository(engine), StrategyStore(engine)
    brand_id = store.save_brand("Trailbean", dna(), website=SRC)
    assert store.get_brand("trailbean")[2] == dna().model_copy(
        update={"created_at": store.get_brand("Trailbean")[2].created_at}
    )  # type: ignore[union-attr]
    persona = _persona()
    repo.upsert_persona(persona)
    store.link_personas(brand_id, [persona.id])
    assert store.personas_of(brand_id) == [persona.id]
    topics = plan_topics(persona, "2026-07", None, count=3, brand_id=brand_id).topics
    store.save_topics(topics)
    store.save_topics(topics)  # idempotent
    assert [t.id for t in store.topics(persona_id=persona.id, month="2026-07")] == [t.id for t in topics]
    assert store.set_topic_status([topics[0].id], ApprovalStatus.approved) == 1
    assert [t.id for t in store.topics(status="approved")] == [topics[0].id]
    post = write_blog_post(store.get_topic(topics[0].id), persona, None).post
    store.save_blog_post(post)
    store.set_blog_status(post.id, ApprovalStatus.approved, reviewer="ana")
    loaded = store.get_blog_post(post.id)
    assert loaded.status is ApprovalStatus.approved and loaded.markdown == post.markdown
    socials = derive_social_posts(loaded, persona, ["x", "linkedin"], None).posts
    store.save_social_posts(socials)
    store.save_social_posts(socials)
    assert store.social_posts(post.id) == sorted(socials, key=lambda p: p.platform.value)
    engine.dispose()
