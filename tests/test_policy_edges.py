"""Policy edges: thresholds just under / at / over, the review band, disputes and platform tiers."""

from __future__ import annotations

import pytest

from contentforge.config import Settings
from contentforge.domain.models import Platform, Verdict
from contentforge.errors import InvalidInput
from contentforge.moderation import CategoryScores, ModerationPolicy
from contentforge.moderation.factory import build_moderator
from contentforge.moderation.policy import DEFAULT_PLATFORM_VERDICTS, platform_verdicts_from_tiers

EPS = 1e-6


@pytest.fixture()
def policy() -> ModerationPolicy:
    return ModerationPolicy.from_settings(Settings(_env_file=None))


def assess(policy: ModerationPolicy, modalities=None, **per_backend: dict[str, float]):
    return policy.assess([(name, CategoryScores(s)) for name, s in per_backend.items()], modalities)


@pytest.mark.parametrize(
    ("category", "threshold"),
    [("sexual", 0.90), ("violence", 0.70), ("hate", 0.50), ("self_harm", 0.50), ("harassment", 0.60)],
)
def test_reject_threshold_just_under_at_and_over(
    policy: ModerationPolicy, category: str, threshold: float
) -> None:
    under = assess(policy, b={category: threshold - EPS})
    at = assess(policy, b={category: threshold})
    over = assess(policy, b={category: threshold + 0.01})
    assert under.verdict.verdict is not Verdict.rejected
    assert under.needs_review, "just under a reject threshold is inside the review band"
    assert at.verdict.verdict is Verdict.rejected and not at.needs_review
    assert over.verdict.verdict is Verdict.rejected and not over.needs_review


def test_review_band_edges(policy: ModerationPolicy) -> None:
    # Band for hate (threshold .50, margin .05) is [0.45, 0.50).
    assert not assess(policy, b={"hate": 0.45 - 0.001}).needs_review
    band_start = assess(policy, b={"hate": 0.45})
    assert band_start.needs_review and band_start.verdict.verdict is Verdict.safe
    assert band_start.verdict.reasons[0].startswith("needs review: borderline: hate 0.45")


def test_sexual_tier_bounds_are_not_review_triggers(policy: ModerationPolicy) -> None:
    for score, tier in [(0.40 - EPS, Verdict.safe), (0.40, Verdict.suggestive), (0.70, Verdict.restricted)]:
        result = assess(policy, b={"sexual": score})
        assert result.verdict.verdict is tier and not result.needs_review
    assert assess(policy, b={"sexual": 0.86}).needs_review  # .85 <= .86 < .90


def test_margin_zero_disables_the_band() -> None:
    policy = ModerationPolicy.from_settings(Settings(_env_file=None, moderation_review_margin=0.0))
    assert not assess(policy, b={"hate": 0.4999}).needs_review


def test_better_informed_backend_disputing_a_reject_holds_it_for_review(policy: ModerationPolicy) -> None:
    modalities = {"text_rules": frozenset({"text"}), "openai": frozenset({"image", "text"})}
    result = assess(policy, modalities, text_rules={"hate": 0.9}, openai={"hate": 0.02})
    assert result.needs_review
    assert result.verdict.verdict is Verdict.restricted  # never auto-published, never auto-rejected
    assert any(r.startswith("disputed: hate text_rules 0.90 vs openai 0.02") for r in result.review_reasons)


def test_less_informed_backend_cannot_dispute(policy: ModerationPolicy) -> None:
    # NudeNet saw only the image; OpenAI saw image and text and is worried: no dispute, plain reject.
    modalities = {"nudenet": frozenset({"image"}), "openai": frozenset({"image", "text"})}
    result = assess(policy, modalities, nudenet={"sexual": 0.0}, openai={"sexual": 0.95})
    assert result.verdict.verdict is Verdict.rejected and not result.needs_review
    # Image-only and text-only backends never dispute each other (they saw different things).
    local = {"nudenet": frozenset({"image"}), "text_rules": frozenset({"text"})}
    assert not assess(policy, local, nudenet={"sexual": 0.6}, text_rules={"sexual": 0.0}).needs_review


def test_small_disagreement_is_not_a_dispute(policy: ModerationPolicy) -> None:
    assert not assess(policy, None, a={"violence": 0.49}, b={"violence": 0.0}).needs_review  # gap < .5
    assert assess(policy, None, a={"violence": 0.5}, b={"violence": 0.0}).needs_review  # gap exactly .5


def test_platform_defaults_and_config(policy: ModerationPolicy) -> None:
    assert policy.platform_verdicts == DEFAULT_PLATFORM_VERDICTS
    configured = ModerationPolicy.from_settings(
        Settings(_env_file=None, platform_tiers={"tiktok": ["safe"], "linkedin": ["safe", "suggestive"]})
    )
    assert configured.platform_accepts(Verdict.safe, Platform.tiktok)
    assert not configured.platform_accepts(Verdict.suggestive, Platform.tiktok)
    assert configured.platform_accepts(Verdict.suggestive, Platform.linkedin)
    assert configured.platform_accepts(Verdict.suggestive, Platform.instagram)  # unlisted: default
    assert configured.accepted_platforms(Verdict.restricted) == ()
    assert configured.accepted_platforms(Verdict.rejected) == ()


def test_platform_tiers_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTENTFORGE_PLATFORM_TIERS", '{"x": [], "threads": ["safe"]}')
    policy = ModerationPolicy.from_settings(Settings(_env_file=None))
    assert policy.accepted_platforms(Verdict.safe) == (
        Platform.instagram,
        Platform.tiktok,
        Platform.threads,
        Platform.linkedin,
    )
    assert Platform.x not in policy.accepted_platforms(Verdict.suggestive)


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ({"tiktok": ["restricted"]}, "only 'safe' and 'suggestive'"),
        ({"tiktok": ["rejected"]}, "only 'safe' and 'suggestive'"),
        ({"myspace": ["safe"]}, "unknown platform 'myspace'"),
        ({"tiktok": "safe"}, "needs a list"),
    ],
)
def test_bad_platform_tiers_fail_clearly(tiers, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        platform_verdicts_from_tiers(tiers)


def test_bad_tiers_fail_when_building_the_moderator() -> None:
    with pytest.raises(InvalidInput, match="restricted"):
        build_moderator(Settings(_env_file=None, platform_tiers={"instagram": ["safe", "restricted"]}))
