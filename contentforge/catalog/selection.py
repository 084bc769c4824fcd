"""Pick the templates for a batch: right tier counts, persona-relevant, varied, reproducible.

A batch must be reproducible from its seed (reruns address the same pieces), must honour the tier
mix exactly (it is a content-policy knob, not a hint), and should look like the persona's feed:
templates tagged with the persona's niche come first, related niches fill in when there are too
few, and the whole tier is the last resort. Repeats are spread out: no template appears a second
time before every eligible template appeared once. Feedback weights (e.g. engagement) only change
the order in which eligible templates are drawn; they never exclude one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from contentforge.domain.models import Template, TemplateTier, TierMix
from contentforge.errors import InvalidInput

RELATED_NICHES: dict[str, tuple[str, ...]] = {
    "fitness": ("wellness", "outdoors", "nature", "beach"),
    "wellness": ("fitness", "lifestyle", "nature", "food"),
    "yoga": ("wellness", "fitness", "nature"),
    "outdoors": ("nature", "travel", "fitness", "beach"),
    "nature": ("outdoors", "travel", "wellness"),
    "travel": ("beach", "outdoors", "nature", "lifestyle", "food"),
    "beach": ("travel", "lifestyle", "fitness"),
    "fashion": ("beauty", "lifestyle", "urban", "travel"),
    "beauty": ("fashion", "lifestyle", "wellness"),
    "lifestyle": ("fashion", "travel", "food", "wellness", "urban"),
    "urban": ("lifestyle", "fashion", "food"),
    "food": ("lifestyle", "travel", "wellness"),
    "tech": ("business", "lifestyle", "urban"),
    "business": ("tech", "lifestyle", "urban"),
    "gaming": ("tech", "lifestyle"),
}
"""Niches a persona's feed can borrow from when its own niche has too few templates."""

_MIN_WEIGHT = 1e-6


def _matches(template: Template, niches: set[str]) -> bool:
    return template.category.lower() in niches or any(n.lower() in niches for n in template.niches)


def _preference_groups(pool: Sequence[Template], niche: str) -> list[list[Template]]:
    """Split a tier's templates into [own niche, related niches, everything else]."""
    own = [t for t in pool if _matches(t, {niche})]
    related_niches = set(RELATED_NICHES.get(niche, ()))
    related = [t for t in pool if t not in own and _matches(t, related_niches)]
    rest = [t for t in pool if t not in own and t not in related]
    return [own, related, rest]


def _eligible_groups(pool: Sequence[Template], niche: str, count: int) -> list[list[Template]]:
    """The fewest preference groups that together hold at least ``count`` templates."""
    chosen: list[list[Template]] = []
    size = 0
    for group in _preference_groups(pool, niche):
        if size >= count:
            break
        if group:
            chosen.append(group)
            size += len(group)
    return chosen


def _weighted_order(
    group: Sequence[Template], weights: Mapping[str, float], rng: random.Random
) -> list[Template]:
    """A weighted random permutation (Efraimidis-Spirakis keys): heavier templates tend to come first."""
    keyed = []
    for template in group:
        weight = max(weights.get(template.id, 1.0), _MIN_WEIGHT)
        keyed.append((rng.random() ** (1.0 / weight), template.id, template))
    keyed.sort(key=lambda item: (-item[0], item[1]))
    return [template for _, _, template in keyed]


def _draw(
    groups: list[list[Template]], count: int, weights: Mapping[str, float], rng: random.Random
) -> list[Template]:
    """Draw in rounds; each round uses every eligible template once, preferred groups first."""
    picked: list[Template] = []
    while len(picked) < count:
        round_order = [t for group in groups for t in _weighted_order(group, weights, rng)]
        if picked and len(round_order) > 1 and round_order[0].id == picked[-1].id:
            round_order.append(round_order.pop(0))  # avoid the same template twice in a row
        picked.extend(round_order[: count - len(picked)])
    return picked


def _interleave(per_tier: dict[TemplateTier, list[Template]]) -> list[Template]:
    """Merge tiers so each is spread evenly through the batch instead of clustered at one end."""
    totals = {tier: len(items) for tier, items in per_tier.items() if items}
    taken = dict.fromkeys(totals, 0)
    merged: list[Template] = []
    for _ in range(sum(totals.values())):
        tier = min(
            (t for t in totals if taken[t] < totals[t]),
            key=lambda t: ((taken[t] + 0.5) / totals[t], t.value),
        )
        merged.append(per_tier[tier][taken[tier]])
        taken[tier] += 1
    return merged


def _check_weights(weights: Mapping[str, float]) -> None:
    bad = {k: v for k, v in weights.items() if not math.isfinite(v) or v < 0}
    if bad:
        raise InvalidInput(f"template weights must be finite and >= 0, got {bad}")


def select_templates(
    templates: Sequence[Template],
    *,
    niche: str,
    count: int,
    tier_mix: TierMix,
    seed: int,
    weights: Mapping[str, float] | None = None,
) -> list[Template]:
    """Choose ``count`` templates: exactly ``tier_mix.counts(count)`` per tier, deterministic for ``seed``.

    ``weights`` maps template ids to feedback weights (default 1.0; 0 means "draw last").
    Raises ``InvalidInput`` for a negative count, bad weights, or a tier that must contribute
    pieces but has no templates.
    """
    if count < 0:
        raise InvalidInput(f"count must be >= 0, got {count}")
    weights = dict(weights or {})
    _check_weights(weights)
    wanted_niche = niche.strip().lower()
    per_tier: dict[TemplateTier, list[Template]] = {}
    for tier, tier_count in tier_mix.counts(count).items():
        if tier_count == 0:
            continue
        pool = [t for t in templates if t.tier == tier]
        if not pool:
            raise InvalidInput(
                f"the tier mix asks for {tier_count} {tier.value} piece(s) but the library has no "
                f"{tier.value} templates; change the tier mix or add templates"
            )
        rng = random.Random(f"contentforge-select:{seed}:{tier.value}")
        per_tier[tier] = _draw(_eligible_groups(pool, wanted_niche, tier_count), tier_count, weights, rng)
    return _interleave(per_tier)
