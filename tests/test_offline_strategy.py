"""Issue 19: offline, the strategy chain for the coffee-roaster brief produces what the brand would post.

From the brief in ``tests/data/brands/coffee-roaster-brief.md`` (research, personas, topics, blog,
social, all offline): topics, the brief and the captions name the brand's real products or values,
never a placeholder noun ("Products"), a pasted product line with its price, or an off-brand niche
(sourdough for a coffee roaster); the blog step writes a brief marked as such; and every text
carries the quality gate's verdict, passed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contentforge.domain.models import Platform
from contentforge.domain.strategy import BlogPost, BrandDNA, SocialPost, Topic
from contentforge.quality.gate import check_text
from contentforge.research.documents import load_document
from contentforge.research.heuristic import extract_dna_heuristic
from contentforge.strategy.blog import BRIEF_MARKER, write_blog_post
from contentforge.strategy.personas import offline_candidates
from contentforge.strategy.social import derive_social_posts
from contentforge.strategy.topics import brand_subjects, plan_topics

BRIEF = Path(__file__).parent / "data" / "brands" / "coffee-roaster-brief.md"
PRODUCTS = ("Trailhead Blend", "Summit Single Origin", "Basecamp Kit")
VALUES = ("Traceable sourcing", "Roasted to order", "Leave the trail better than you found it")
PLACEHOLDER = re.compile(r"(?<![#\w])(Products|Services|Keywords|Topics)\b|#Products|\{\w+\}")
OFF_BRAND = ("sourdough", "baking", "fermentation", "plant-based", "street food")


@pytest.fixture(scope="module")
def dna() -> BrandDNA:
    return extract_dna_heuristic("Ridgeline Coffee Roasters", [load_document(BRIEF)])


@pytest.fixture(scope="module")
def chain(dna: BrandDNA) -> list[tuple[list[Topic], BlogPost, list[SocialPost]]]:
    """For each of three offline personas of the brand: 6 topics, the brief of the first, its captions."""
    out = []
    for candidate in offline_candidates(dna, seed=0)[:3]:
        persona = candidate.to_persona()
        topics = plan_topics(persona, "2026-07", None, dna=dna, count=6, brand_id="ridgeline").topics
        post = write_blog_post(topics[0], persona, None, dna=dna).post
        socials = derive_social_posts(post, persona, list(Platform), None, topic=topics[0]).posts
        out.append((topics, post, socials))
    return out


def _mentions_the_brand(text: str) -> bool:
    return any(name.lower() in text.lower() for name in (*PRODUCTS, *VALUES, "Ridgeline Coffee Roasters"))


def test_topics_come_from_the_brands_products_values_and_audience(chain: list) -> None:  # type: ignore[type-arg]
    for topics, _, _ in chain:
        assert len(topics) == 6
        for topic in topics:
            assert _mentions_the_brand(topic.title) or any(
                a in topic.title for a in ("early risers", "weekend hikers", "home baristas")
            ), topic.title
            assert not PLACEHOLDER.search(topic.title), topic.title
            assert not re.search(r"[$€£]\s?\d", topic.title + topic.angle), "no pasted price strings"
            assert "titanium pour-over cone" not in topic.title, "no pasted product descriptions"
            assert not any(word in topic.title.lower() for word in OFF_BRAND), topic.title
            assert topic.source["quality_gate"]["passed"], topic.source["quality_gate"]
        titles = " ".join(t.title for t in topics)
        assert sum(p in titles for p in PRODUCTS) >= 2, "the products are the first subjects"


def test_a_persona_interest_unrelated_to_the_brand_never_becomes_a_topic(dna: BrandDNA) -> None:
    persona = offline_candidates(dna, seed=0)[0].to_persona()
    baker = persona.model_copy(
        update={"interests": ["sourdough baking", "coffee brewing", "trail photography"]}
    )
    subjects = [s.text for s in brand_subjects(baker, dna) if s.kind == "interest"]
    assert subjects == ["coffee brewing", "trail photography"]


def test_the_offline_blog_step_writes_a_brief_with_the_brands_facts(chain: list) -> None:  # type: ignore[type-arg]
    for topics, post, _ in chain:
        assert post.markdown.startswith(f"# {BRIEF_MARKER}: {topics[0].title}")
        assert post.source["kind"] == "brief" and "needs a model" in post.source["note"]
        assert post.word_count < 1000, "a brief, not 2,000 words of filler"
        for product in PRODUCTS:
            assert product in post.markdown
        assert "$14" in post.markdown and "$79" in post.markdown, "product facts as the brand states them"
        assert "(DNA `values`, upload:coffee-roaster-brief.md)" in post.markdown
        assert "warm, a little playful" in post.markdown
        assert not PLACEHOLDER.search(post.markdown.replace("## Product facts", ""))
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n", post.markdown) if len(s.split()) >= 5]
        assert len(sentences) == len(set(sentences)), "no sentence said twice"
        assert post.source["quality_gate"] == {
            "kind": "brief", "status": "passed", "passed": True, "attempts": 1, "issues": [],
        }  # fmt: skip


def test_offline_social_posts_carry_the_briefs_facts(chain: list, dna: BrandDNA) -> None:  # type: ignore[type-arg]
    for _, _, socials in chain:
        assert {s.platform for s in socials} == set(Platform)
        for social in socials:
            assert _mentions_the_brand(social.text), social.caption
            assert not PLACEHOLDER.search(social.caption), social.caption
            assert not any(word in social.caption.lower() for word in OFF_BRAND), social.caption
            assert "Link in bio for the full post" not in social.text, "a brief is not a post to link to"
            assert social.source["quality_gate"]["passed"], social.source["quality_gate"]
            # every price in a caption is one the brand states
            assert check_text(social.text, "social", dna=dna).rules_failed in ([], ["named"])


def test_a_model_caption_with_engagement_bait_is_rewritten_or_replaced(dna: BrandDNA) -> None:
    from contentforge.domain.strategy import SocialPostDraft
    from contentforge.strategy.social import check_social

    persona = offline_candidates(dna, seed=0)[0].to_persona()
    topic = plan_topics(persona, "2026-07", None, dna=dna, count=1).topics[0]
    post = write_blog_post(topic, persona, None, dna=dna).post
    bait = SocialPostDraft(
        platform=Platform.instagram, text="Trailhead Blend is back ☕\n\nTag a friend who needs this!"
    )
    assert check_social(bait, post).rules_failed == ["engagement_bait"]
    wrong_price = SocialPostDraft(platform=Platform.instagram, text="Trailhead Blend, now $9 ☕")
    assert check_social(wrong_price, post).rules_failed == ["untraceable"]


def test_with_no_model_configured_the_brief_is_written_without_a_failed_call(
    dna: BrandDNA, caplog: pytest.LogCaptureFixture
) -> None:
    from contentforge.config import Settings
    from contentforge.text.providers import build_text_provider

    persona = offline_candidates(dna, seed=0)[0].to_persona()
    topic = plan_topics(persona, "2026-07", None, dna=dna, count=1).topics[0]
    chain = build_text_provider(Settings(text_providers="offline"))
    with caplog.at_level("WARNING"):
        outcome = write_blog_post(topic, persona, chain, dna=dna)
    assert outcome.post.source["kind"] == "brief" and outcome.fallback_reason is None
    assert not [r for r in caplog.records if r.levelname == "WARNING"], "no model: nothing failed"
