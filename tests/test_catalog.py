"""The template library (data and content policy), filtering, and batch template selection."""

from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

from contentforge.catalog import (
    RELATED_NICHES,
    categories,
    explicit_terms_in,
    filter_templates,
    load_templates,
    select_templates,
)
from contentforge.domain.models import Template, TemplateTier, TierMix
from contentforge.errors import InvalidInput

# Independent of the library's own list on purpose: the data must pass a check it did not write.
DENYLIST = (
    "nude", "nudity", "naked", "topless", "nsfw", "explicit", "sexual", "sexy", "porn", "erotic",
    "fetish", "lingerie", "underwear", "bra", "thong", "see-through", "sheer", "cleavage", "busty",
    "breast", "butt", "buttocks", "nipple", "crotch", "genital", "boudoir", "seductive", "lust",
    "undress", "bikini bottom", "child", "kid", "teen", "minor", "underage", "schoolgirl",
)  # fmt: skip
DENY_RE = re.compile(r"\b(?:" + "|".join(map(re.escape, DENYLIST)) + r")(?:s|es)?\b", re.IGNORECASE)
PREFIX = {"fitness": "FIT", "lifestyle": "LIF", "fashion": "FAS", "beach": "BCH", "urban": "URB"}
PREFIX |= {"nature": "NAT", "food": "FOD", "tech": "TEC"}
TASTEFUL_CONTEXT = ("swimsuit", "swimwear", "gown", "dress", "activewear", "leggings", "evening")

LIBRARY = load_templates()


def _text(template: Template) -> str:
    return " ".join(
        [template.prompt, template.pose, template.lighting, template.camera_angle, *template.tags]
    )


# --- the bundled library ---------------------------------------------------------------------
def test_library_has_fifty_unique_templates_in_at_least_six_categories() -> None:
    assert len(LIBRARY) == 50
    assert len({t.id for t in LIBRARY}) == 50
    assert len(categories(LIBRARY)) >= 6
    for template in LIBRARY:
        assert template.id.split("-")[0] == PREFIX[template.category], template.id


def test_tier_split_is_roughly_35_safe_15_suggestive() -> None:
    tiers = Counter(t.tier for t in LIBRARY)
    assert 32 <= tiers[TemplateTier.safe] <= 38
    assert tiers[TemplateTier.safe] + tiers[TemplateTier.suggestive] == 50


@pytest.mark.parametrize("template", LIBRARY, ids=lambda t: t.id)
def test_every_template_is_a_complete_photographic_brief(template: Template) -> None:
    assert 20 <= len(template.prompt.split()) <= 60
    assert template.pose.strip() and template.lighting.strip() and template.camera_angle.strip()
    assert template.niches and all(n == n.lower() for n in template.niches)
    assert template.tags and re.fullmatch(r"[a-z]+(-[a-z]+)*", template.tags[0]), "first tag names the scene"


@pytest.mark.parametrize("template", LIBRARY, ids=lambda t: t.id)
def test_no_template_contains_explicit_terms(template: Template) -> None:
    assert DENY_RE.findall(_text(template)) == []
    assert explicit_terms_in(_text(template)) == []


@pytest.mark.parametrize(
    "template", [t for t in LIBRARY if t.tier == TemplateTier.suggestive], ids=lambda t: t.id
)
def test_suggestive_templates_are_about_tasteful_outfits(template: Template) -> None:
    assert any(word in template.prompt.lower() for word in TASTEFUL_CONTEXT)


def test_default_library_is_cached_but_callers_get_their_own_list() -> None:
    first = load_templates()
    first.clear()
    second = load_templates()
    assert len(second) == 50
    assert second[0] is LIBRARY[0]


# --- loading other files ---------------------------------------------------------------------
def _entry(template_id: str = "TST-001", **overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "id": template_id,
        "category": "test",
        "niches": ["fitness"],
        "prompt": "A bright studio portrait with a plain grey backdrop",
        "pose": "standing",
        "lighting": "softbox",
        "camera_angle": "eye level",
        "tags": ["studio-shoot"],
        "tier": "safe",
    }
    return entry | overrides


def _write(tmp_path: Path, entries: object) -> Path:
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump({"templates": entries}), encoding="utf-8")
    return path


def test_load_from_path_validates_entries(tmp_path: Path) -> None:
    assert [t.id for t in load_templates(_write(tmp_path, [_entry(), _entry("TST-002")]))] == [
        "TST-001",
        "TST-002",
    ]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([_entry(), _entry()], "TST-001: duplicate id"),
        ([_entry(tier="explicit")], "TST-001"),
        ([_entry(id="bad id")], "bad id"),
        ([_entry(prompt="A nude figure on a beach at sunset")], "content policy (prompt: nude)"),
        ([_entry(tags=["lingerie"])], "tags: lingerie"),
        ([], "no templates"),
    ],
)
def test_load_rejects_bad_libraries_naming_the_template(
    tmp_path: Path, entries: object, message: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        load_templates(_write(tmp_path, entries))


def test_load_rejects_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_templates(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="'templates' list"):
        load_templates(tmp_path / "list.yaml")


# --- filtering -------------------------------------------------------------------------------
def test_filter_by_category_tier_tags_and_niche() -> None:
    beach = filter_templates(LIBRARY, category="Beach")
    assert beach and all(t.category == "beach" for t in beach)
    swim = filter_templates(LIBRARY, tier=TemplateTier.suggestive, tags=["swimwear"])
    assert swim and all(t.tier == TemplateTier.suggestive and "swimwear" in t.tags for t in swim)
    both = filter_templates(LIBRARY, tags=["Swimwear", "resort"])
    assert [t.id for t in both] == ["LIF-007", "BCH-004"], "every tag must be present, not any"
    tech = filter_templates(LIBRARY, niche=" TECH ")
    assert tech and all("tech" in t.niches for t in tech)
    assert filter_templates(LIBRARY, category="no-such-category") == []


def test_categories_are_sorted_and_distinct() -> None:
    assert categories(LIBRARY) == sorted(set(t.category for t in LIBRARY))


# --- selection -------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 1, 7, 10, 33, 50, 120])
@pytest.mark.parametrize("mix", ["safe=0.7,suggestive=0.3", "safe=1,suggestive=0", "safe=0.5,suggestive=0.5"])
def test_selection_honours_tier_counts_exactly(count: int, mix: str) -> None:
    tier_mix = TierMix.parse(mix)
    chosen = select_templates(LIBRARY, niche="fitness", count=count, tier_mix=tier_mix, seed=7)
    assert len(chosen) == count
    got = Counter(t.tier for t in chosen)
    for tier, expected in tier_mix.counts(count).items():
        assert got[tier] == expected


def test_selection_is_deterministic_per_seed_and_varies_across_seeds() -> None:
    def pick(seed: int) -> list[str]:
        return [
            t.id for t in select_templates(LIBRARY, niche="travel", count=10, tier_mix=TierMix(), seed=seed)
        ]

    assert pick(3) == pick(3)
    assert len({tuple(pick(seed)) for seed in range(10)}) >= 8


@pytest.mark.parametrize("niche", ["fitness", "fashion", "beach", "tech", "food", "nature"])
@pytest.mark.parametrize("count", [4, 10, 20])
def test_selection_prefers_the_persona_niche(niche: str, count: int) -> None:
    tier_mix = TierMix()
    chosen = select_templates(LIBRARY, niche=niche, count=count, tier_mix=tier_mix, seed=11)
    for tier, wanted in tier_mix.counts(count).items():
        own = {t.id for t in filter_templates(LIBRARY, tier=tier) if niche in t.niches or t.category == niche}
        picked = {t.id for t in chosen if t.tier == tier}
        if len(own) >= wanted:
            assert picked <= own, f"{tier}: chose outside the niche although it had enough"
        else:
            assert own <= picked, f"{tier}: fell back before using every niche template"


def test_selection_falls_back_to_related_niches_before_everything_else() -> None:
    chosen = select_templates(LIBRARY, niche="yoga", count=10, tier_mix=TierMix(safe=1, suggestive=0), seed=5)
    related = set(RELATED_NICHES["yoga"])
    assert all(related & ({*t.niches, t.category}) for t in chosen)


def test_unknown_niche_still_gets_a_full_varied_batch() -> None:
    chosen = select_templates(LIBRARY, niche="astronomy", count=20, tier_mix=TierMix(), seed=2)
    assert len(chosen) == 20 and len({t.id for t in chosen}) == 20


def test_repeats_are_spread_evenly() -> None:
    safe_pool = len(filter_templates(LIBRARY, tier=TemplateTier.safe))
    chosen = select_templates(
        LIBRARY, niche="fitness", count=100, tier_mix=TierMix(safe=1, suggestive=0), seed=9
    )
    ids = [t.id for t in chosen]
    assert len(set(ids[:safe_pool])) == safe_pool, "a template repeated before all were used once"
    uses = Counter(ids)
    assert len(uses) == safe_pool and max(uses.values()) - min(uses.values()) <= 1
    assert all(a != b for a, b in pairwise(ids)), "same template twice in a row"


def test_small_pools_never_repeat_a_template_back_to_back() -> None:
    pool = filter_templates(LIBRARY, category="food")
    mix = TierMix(safe=1, suggestive=0)
    for seed in range(30):
        ids = [t.id for t in select_templates(pool, niche="food", count=20, tier_mix=mix, seed=seed)]
        assert all(a != b for a, b in pairwise(ids)), ids


def test_tiers_are_interleaved_not_clustered() -> None:
    chosen = select_templates(LIBRARY, niche="fashion", count=10, tier_mix=TierMix(), seed=4)
    flags = [t.tier == TemplateTier.suggestive for t in chosen]
    assert sum(flags) == 3
    assert not any(a and b for a, b in pairwise(flags))


def test_feedback_weights_bias_the_draw() -> None:
    own = [t for t in filter_templates(LIBRARY, niche="fitness", tier=TemplateTier.safe)]
    favourite, disliked = own[0].id, own[1].id
    mix = TierMix(safe=1, suggestive=0)
    firsts = Counter(
        select_templates(LIBRARY, niche="fitness", count=1, tier_mix=mix, seed=s, weights={favourite: 200.0})[
            0
        ].id
        for s in range(100)
    )
    assert firsts[favourite] >= 85
    left_out = Counter(
        disliked
        not in {
            t.id
            for t in select_templates(
                LIBRARY, niche="fitness", count=len(own) - 1, tier_mix=mix, seed=s, weights={disliked: 0.0}
            )
        }
        for s in range(50)
    )
    assert left_out[True] >= 45


@pytest.mark.parametrize("weights", [{"FIT-001": -1.0}, {"FIT-001": float("nan")}])
def test_bad_weights_are_rejected(weights: dict[str, float]) -> None:
    with pytest.raises(InvalidInput, match="weights"):
        select_templates(LIBRARY, niche="fitness", count=3, tier_mix=TierMix(), seed=1, weights=weights)


def test_missing_tier_is_an_error_only_when_needed() -> None:
    safe_only = filter_templates(LIBRARY, tier=TemplateTier.safe)
    with pytest.raises(InvalidInput, match="no suggestive templates"):
        select_templates(safe_only, niche="fitness", count=10, tier_mix=TierMix(), seed=1)
    chosen = select_templates(
        safe_only, niche="fitness", count=10, tier_mix=TierMix(safe=1, suggestive=0), seed=1
    )
    assert len(chosen) == 10


def test_negative_count_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="count"):
        select_templates(LIBRARY, niche="fitness", count=-1, tier_mix=TierMix(), seed=1)
