"""The quality gate: one test per rule, engagement-bait CTAs rewritten and honest ones kept, the offline
CTA bank and hooks pass it, and a failing text is regenerated once, then falls back or goes to review."""

from __future__ import annotations

import pytest

from contentforge.catalog import load_templates
from contentforge.domain.models import Persona, Platform
from contentforge.domain.strategy import BrandDNA, FieldMethod, found
from contentforge.quality.gate import check_text, engagement_bait, gate_text, rewrite_cta
from contentforge.text.hooks import OfflineHookWriter
from contentforge.text.platform_rules import rules_for

SOURCE = "upload:brief.md"


def _dna() -> BrandDNA:
    def fact(value: object) -> dict[str, object]:
        return found(value, SOURCE, FieldMethod.extracted, "stated")

    return BrandDNA.model_validate(
        {
            "brand": "Ridgeline Coffee Roasters",
            "products": fact(
                [
                    "Trailhead Blend: a medium roast, 340 g whole bean, $14.",
                    "The Basecamp Kit: a titanium pour-over cone, a 600 ml mug and two bags of coffee, $79.",
                ]
            ),
            "values": fact(["Traceable sourcing", "Roasted to order"]),
            "certifications": fact(["Fair Trade"]),
        }
    )


def _rules(result: object) -> list[str]:
    return result.rules_failed  # type: ignore[attr-defined, no-any-return]


def test_a_clean_text_passes_every_rule() -> None:
    text = "Ridgeline Coffee Roasters roasts the Trailhead Blend to order, $14 a bag. Which brew do you use?"
    result = check_text(text, "social", dna=_dna(), must_name=["Ridgeline Coffee Roasters"])
    assert result.passed, result.issues


def test_named_the_brand_or_persona_must_appear() -> None:
    assert _rules(check_text("A good cup starts with fresh beans.", "brief", must_name=["Ridgeline"])) == [
        "named"
    ]
    assert check_text("Ridgeline starts with fresh beans.", "brief", must_name=["Ridgeline"]).passed


def test_repeated_sentences_are_caught() -> None:
    text = "Consistency beats intensity every time. Brew daily. Consistency beats intensity every time."
    assert _rules(check_text(text, "blog")) == ["repeated_sentence"]


@pytest.mark.parametrize(
    "text",
    [
        "Why {kw} earns its place in your routine",
        "A guide to [PRODUCT] for beginners",
        "Hello {{name}}, welcome back",
        "Our best None of the season",
        "Products mistakes to avoid",
        "coffee coffee coffee for everyone",
        "Lorem ipsum dolor sit amet",
    ],
)
def test_unfilled_or_degenerate_slots_are_caught(text: str) -> None:
    assert "unfilled_slot" in _rules(check_text(text, "topic"))


def test_a_field_name_as_a_hashtag_is_caught() -> None:
    assert "unfilled_slot" in _rules(
        check_text("Fresh roast day at the shop.", "social", hashtags=["Products"])
    )


def test_a_price_pasted_into_a_title_is_caught() -> None:
    title = "Why The Basecamp Kit: a titanium pour-over cone, a 600 ml mug and two bags, $79. earns its place"
    assert "pasted_price" in _rules(check_text(title, "topic", dna=_dna()))


def test_prices_products_and_claims_must_trace_to_the_dna() -> None:
    dna = _dna()
    assert check_text("The Basecamp Kit is $79 and the Trailhead Blend $14.", "brief", dna=dna).passed
    wrong_price = check_text("The Trailhead Blend, $12 this week.", "social", dna=dna)
    assert [i.rule for i in wrong_price.issues] == ["untraceable"] and "12" in wrong_price.issues[0].detail
    unknown_product = check_text("Try the Glacier Espresso: $14 a bag.", "social", dna=dna)
    assert any("Glacier Espresso" in i.detail for i in unknown_product.issues)
    claim = check_text("Our award-winning beans are 100% organic.", "social", dna=dna)
    assert {i.detail for i in claim.issues} == {
        "claim 'award-winning' is not in the brand's DNA",
        "claim '100%' is not in the brand's DNA",
    }
    assert check_text("Every bag is Fair Trade certified.", "social", dna=dna).rules_failed == ["untraceable"]
    assert check_text("Every bag is Fair Trade.", "social", dna=dna).passed


def test_platform_rules_are_checked_as_before() -> None:
    long_caption = "word " * 80
    assert "platform" in _rules(check_text(long_caption, "social", platform=Platform.x))
    assert "platform" in _rules(check_text("ok caption", "social", platform="x", hashtags=["a", "b", "c"]))


BAIT = [
    ("Double tap if this is your kind of morning ☕", "react"),
    ("Tell me in the comments which detail you'd steal.", "comment"),
    ("Share this with the friend who needs more coffee in their life.", "share"),
    ("Tag someone who needs this brew today!", "tag"),
    ("Vote with a reaction: ❤️ for light roast, 😮 for dark.", "vote"),
]
HONEST = [
    "Save this for your next slow Sunday.",
    "What's your go-to brew method?",
    "Read the full guide at the link in bio.",
    "Shop the Trailhead Blend on our site.",
    "Follow along for more coffee from the trail.",
]


@pytest.mark.parametrize(("cta", "category"), BAIT)
def test_engagement_bait_ctas_are_flagged_and_rewritten(cta: str, category: str) -> None:
    assert category in [kind for kind, _ in engagement_bait(cta)]
    assert "engagement_bait" in _rules(check_text(f"Morning roast is ready.\n\n{cta}", "social"))
    rewritten = rewrite_cta(cta, honest="Save this for your next brew.")
    assert rewritten == "Save this for your next brew."
    assert not engagement_bait(rewritten)


@pytest.mark.parametrize("cta", HONEST)
def test_honest_ctas_are_kept(cta: str) -> None:
    assert engagement_bait(cta) == []
    assert rewrite_cta(cta, honest="unused") == cta
    assert check_text(cta, "cta").passed


def test_rewriting_keeps_the_honest_part_of_a_mixed_cta() -> None:
    assert (
        rewrite_cta("What has worked for you? Share in the comments.", honest="x")
        == "What has worked for you?"
    )


@pytest.mark.parametrize("platform", list(Platform))
def test_the_offline_cta_bank_passes_the_gate(platform: Platform) -> None:
    for cta in rules_for(platform).calls_to_action:
        filled = cta.format(category="coffee", interest="trail running", name="Mia")
        result = check_text(filled, "cta")
        assert result.passed, (platform.value, filled, result.issues)


def test_offline_hooks_pass_the_gate() -> None:
    persona = Persona(
        id="mia", name="Mia Fit", niche="fitness", appearance="athletic, short dark hair, running gear",
        personality_traits=["upbeat", "disciplined"], interests=["trail running", "meal prep"],
        tone="upbeat, encouraging", platforms=[Platform.instagram],
    )  # fmt: skip
    writer = OfflineHookWriter()
    for template in load_templates()[:12]:
        for platform in Platform:
            for hook in writer.write_hooks(persona, template, platform, seed=3):
                result = check_text(hook.caption, "hook", platform=platform, hashtags=hook.hashtags)
                assert result.passed, (template.id, platform.value, hook.text, result.issues)


def test_a_failing_text_is_regenerated_once_then_falls_back() -> None:
    def check(text: str) -> object:
        return check_text(text, "social")

    calls: list[str] = []

    def regenerate() -> str:
        calls.append("again")
        return "Double tap if you agree."

    gated = gate_text(
        "Tag a friend who needs this.", check, regenerate=regenerate, fallback=lambda: "Fresh roast."
    )  # type: ignore[arg-type]
    assert calls == ["again"], "regenerated exactly once"
    assert (gated.text, gated.result.status, gated.result.attempts) == ("Fresh roast.", "fallback", 2)

    passed_second = gate_text("Tag a friend.", check, regenerate=lambda: "Fresh roast today.")  # type: ignore[arg-type]
    assert (passed_second.text, passed_second.result.status) == ("Fresh roast today.", "regenerated")


def test_a_text_that_still_fails_is_marked_for_review_not_passed() -> None:
    gated = gate_text(
        "Tag a friend who needs this.",
        lambda t: check_text(t, "social"),
        regenerate=lambda: "Tag your bestie now.",
        fallback=lambda: "Share this with a friend.",
    )
    assert gated.result.status == "needs_review" and not gated.result.passed
    stored = gated.result.as_dict()
    assert stored["status"] == "needs_review" and stored["issues"][0]["rule"] == "engagement_bait"
