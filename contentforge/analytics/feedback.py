"""Feeding back: learned weights steer the next batch's template draw, hook order and posting slots.

Each decision says what influenced it, and ``record`` keeps that per piece (``piece_feedback``):

* **Templates**: a weight per template from its category's learned lift, drawn by Thompson sampling
  (one draw per category per batch from a log-normal around the lift, as wide as its interval; an
  untested category draws around 1.0 with a wide spread), so untested templates still get drawn.
* **Hashtags**: chosen, not only reordered. The candidates are every tag the piece's hook variations
  on the platform carry (all on the piece's topic). Required tags are kept: ``required_tags`` when
  the caller knows them, else the tag every variation leads with (the persona's niche tag, which the
  writers put first). The other places, as many as the hook had and never more than the platform
  allows, go to the candidates by Thompson sampling on their learned lift (an untested tag draws
  around 1.0 with a wide spread); a tag whose whole interval lies below 1.0 is left out (fewer tags
  rather than one that measurably costs reach), and one place is kept for the best-drawn untested tag
  when there are two or more free places, so tags without history still get posts and can be
  learned. A choice that would break the platform's caption rules is cut back, and the hook keeps
  its own tags when nothing fits.
* **Hooks**: the piece's hook variations ordered by the learned lifts of their style, call to action
  and chosen hashtags (untested values count as 1.0); the first one is the one published first.
* **Slots**: posting hours by Thompson sampling from the hour posteriors (``timing.choose_hours``);
  with too little data the configured slots stay, and the reason says "default: only N posts".

An account with no learned weights changes nothing: the defaults stay, and nothing is recorded.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from contentforge.analytics.features import template_category
from contentforge.analytics.timing import MIN_POSTS, HourEstimate, TimingAdvice, choose_hours
from contentforge.db import PlannedPiece
from contentforge.db.analytics import AnalyticsStore
from contentforge.domain.analytics import LearnedWeight
from contentforge.domain.models import Hook, Persona, Template
from contentforge.text.platform_rules import check_caption, rules_for

Z90 = 1.645
UNTESTED_SD = 0.35
"""Spread (log scale) of the draw for a category with no learned lift: exploration."""


def _sd(weight: LearnedWeight) -> float:
    return max((math.log(weight.upper) - math.log(weight.lower)) / (2 * Z90), 1e-3)


@dataclass(frozen=True)
class TemplateWeights:
    weights: dict[str, float]
    """Template id → weight for ``select_templates(weights=…)``; empty when nothing was learned."""
    draws: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Category → its learned lift, interval, posts and this batch's draw."""

    def decision_for(self, template_id: str) -> dict[str, Any] | None:
        category = template_category(template_id)
        if not self.weights or category is None:
            return None
        return {"template_id": template_id, "category": category, **self.draws.get(category, {})}


def template_weights(
    store: AnalyticsStore, account: str, platform: str, templates: Sequence[Template], *, seed: int
) -> TemplateWeights:
    learned = {w.key: w for w in store.weights(account, platform, "template_category")}
    if not learned:
        return TemplateWeights({})
    rng = random.Random(f"contentforge-feedback:{seed}:{account}:{platform}")
    draws: dict[str, dict[str, Any]] = {}
    for category in sorted({t.category for t in templates}):
        weight = learned.get(category)
        mean, sd = (math.log(weight.lift), _sd(weight)) if weight else (0.0, UNTESTED_SD)
        drawn = math.exp(rng.gauss(mean, sd))
        draws[category] = {
            "draw": round(drawn, 4),
            "lift": round(weight.lift, 4) if weight else None,
            "interval": [round(weight.lower, 4), round(weight.upper, 4)] if weight else None,
            "n_posts": weight.n_posts if weight else 0,
            "method": "thompson sampling on learned template_category lift",
        }
    return TemplateWeights({t.id: draws[t.category]["draw"] for t in templates}, draws)


def record_template_feedback(
    store: AnalyticsStore, planned: Sequence[PlannedPiece], learned: TemplateWeights
) -> None:
    """Record on each planned piece the learned weight its template was drawn with."""
    if not learned.weights:
        return
    for piece in planned:
        decision = learned.decision_for(piece.template_id)
        if decision is not None:
            store.record_feedback(piece.piece_id, {"template": decision})


def _lift(weights: Mapping[str, LearnedWeight], key: str | None) -> float:
    weight = weights.get(key or "")
    return math.log(weight.lift) if weight else 0.0


@dataclass(frozen=True)
class HookRanking:
    hooks: list[Hook]
    decision: dict[str, Any] | None


@dataclass(frozen=True)
class HashtagChoice:
    tags: list[str]
    required: list[str]
    explored: list[str]
    """Untested tags given a place so that they get a history."""
    dropped: list[str] = field(default_factory=list)
    """Tags left out because their learned lift is below 1.0 with its whole interval."""
    kept_own: bool = False
    """True when no chosen set fitted the platform's caption rules and the hook kept its own tags."""


def _tag_key(tag: str) -> str:
    return tag.lower().lstrip("#")


def _fits(hook: Hook, tags: list[str], allowed: set[str]) -> bool:
    """No caption-rule violation beyond those the hook already had (``allowed``)."""
    text = "\n\n".join(part for part in (hook.text, hook.call_to_action) if part)
    return set(check_caption(text, tags, hook.platform)) <= allowed


def choose_hashtags(
    hook: Hook,
    candidates: Sequence[str],
    required: Sequence[str],
    learned: Mapping[str, LearnedWeight],
    rng: random.Random,
) -> HashtagChoice:
    """The hook's hashtags chosen by learned lift within the platform's rules (see the module text)."""
    limit = min(len(hook.hashtags), rules_for(hook.platform).max_hashtags)
    if limit == 0:
        return HashtagChoice([], [], [])
    by_key = {_tag_key(t): t for t in (*hook.hashtags, *candidates)}
    kept = [by_key[k] for k in dict.fromkeys(_tag_key(t) for t in required) if k in by_key][:limit]
    draws = {}
    harmful = [k for k in by_key if k in learned and learned[k].upper < 1.0]
    for key in by_key:
        if key in {_tag_key(t) for t in kept} or key in harmful:
            continue
        weight = learned.get(key)
        mean, sd = (math.log(weight.lift), _sd(weight)) if weight else (0.0, UNTESTED_SD)
        draws[key] = rng.gauss(mean, sd)
    ranked = sorted(draws, key=lambda k: -draws[k])
    untested = [k for k in ranked if k not in learned]
    free = limit - len(kept)
    explored = untested[:1] if free >= 2 and any(k in learned for k in ranked) else []
    rest = [k for k in ranked if k not in explored][: free - len(explored)]
    chosen = kept + [by_key[k] for k in rest] + [by_key[k] for k in explored]
    allowed = set(
        check_caption(
            "\n\n".join(p for p in (hook.text, hook.call_to_action) if p), hook.hashtags, hook.platform
        )
    )
    while chosen and not _fits(hook, chosen, allowed):
        exploring = {by_key[k] for k in explored}
        droppable = (
            [t for t in chosen if t not in kept and t not in exploring] or chosen[len(kept) :] or chosen
        )
        chosen.remove(droppable[-1])
    if not chosen and hook.hashtags:
        return HashtagChoice(list(hook.hashtags), [], [], kept_own=True)
    return HashtagChoice(
        chosen,
        [t for t in kept if t in chosen],
        [by_key[k] for k in explored if by_key[k] in chosen],
        [by_key[k] for k in harmful if by_key[k] not in kept],
    )


def order_hooks(
    store: AnalyticsStore,
    account: str,
    platform: str,
    hooks: Sequence[Hook],
    *,
    required_tags: Sequence[str] | None = None,
) -> HookRanking:
    """``hooks`` best first by learned lift (stable for ties), hashtags chosen; unchanged when nothing
    was learned. ``required_tags``: tags every hook keeps (default: the tag all hooks lead with)."""
    learned: dict[str, dict[str, LearnedWeight]] = {"hook_style": {}, "call_to_action": {}, "hashtag": {}}
    for weight in store.weights(account, platform):
        if weight.kind in learned:
            learned[weight.kind][weight.key] = weight
    if not hooks or not any(learned.values()):
        return HookRanking(list(hooks), None)

    choices: list[HashtagChoice | None] = [None] * len(hooks)
    if learned["hashtag"]:
        candidates = list(dict.fromkeys(t for hook in hooks for t in hook.hashtags))
        leading = {_tag_key(hook.hashtags[0]) if hook.hashtags else "" for hook in hooks}
        if required_tags is not None:
            required = list(required_tags)
        else:
            required = [t for t in candidates if len(leading) == 1 and _tag_key(t) in leading][:1]
        seed = "\n".join(hook.text for hook in hooks)
        rng = random.Random(f"contentforge-hashtags:{account}:{platform}:{seed}")
        choices = [choose_hashtags(hook, candidates, required, learned["hashtag"], rng) for hook in hooks]
    chosen = [
        hook if choice is None else hook.model_copy(update={"hashtags": choice.tags})
        for hook, choice in zip(hooks, choices, strict=True)
    ]

    def tag_lift(tag: str) -> float:
        return _lift(learned["hashtag"], _tag_key(tag))

    def score(hook: Hook) -> float:
        tags = [tag_lift(t) for t in hook.hashtags]
        return (
            _lift(learned["hook_style"], hook.style.value)
            + _lift(learned["call_to_action"], hook.call_to_action)
            + (sum(tags) / len(tags) if tags else 0.0)
        )

    scored = sorted(enumerate(chosen), key=lambda item: (-score(item[1]), item[0]))
    decision: dict[str, Any] = {
        "order": [hook.style.value for _, hook in scored],
        "original_positions": [index for index, _ in scored],
        "scores": [round(math.exp(score(hook)), 4) for _, hook in scored],
        "publish_first": scored[0][1].style.value,
        "method": "learned lifts of hook_style, call_to_action and hashtags",
    }
    # The hashtags record is that of the hook published first: a gate-held hook never is.
    first_index = next((i for i, hook in scored if not hook.held_by_quality_gate), scored[0][0])
    first = choices[first_index]
    if first is not None:
        decision["hashtags"] = _hashtag_decision(first, hooks[first_index], learned["hashtag"])
    return HookRanking([hook for _, hook in scored], decision)


def _hashtag_decision(
    choice: HashtagChoice, hook: Hook, learned: Mapping[str, LearnedWeight]
) -> dict[str, Any]:
    """What the first hook's hashtags were chosen from and with which learned weights."""
    weights = {
        tag: {
            "lift": round(w.lift, 4),
            "interval": [round(w.lower, 4), round(w.upper, 4)],
            "n_posts": w.n_posts,
        }
        for tag in choice.tags
        if (w := learned.get(_tag_key(tag))) is not None
    }
    return {
        "chosen": choice.tags,
        "written": list(hook.hashtags),
        "required": choice.required,
        "explored": choice.explored,
        "dropped": choice.dropped,
        "weights": weights,
        "limit": rules_for(hook.platform).max_hashtags,
        "method": (
            "kept its own tags: no ranked choice fitted the caption rules"
            if choice.kept_own
            else "thompson sampling on learned hashtag lift, one place for an untested tag"
        ),
    }


def _advice_from_weights(weights: Sequence[LearnedWeight]) -> TimingAdvice:
    """Hour-of-day posteriors from the stored hour-of-week cells (each hour's 7 cells averaged)."""
    by_hour: dict[int, list[LearnedWeight]] = {}
    for weight in weights:
        by_hour.setdefault(int(weight.key) % 24, []).append(weight)
    hours = []
    for hour, cells in sorted(by_hour.items()):
        mean = sum(math.log(c.lift) for c in cells) / len(cells)
        sd = sum(_sd(c) for c in cells) / len(cells)
        hours.append(
            HourEstimate(
                hour, math.exp(mean), math.exp(mean - Z90 * sd), math.exp(mean + Z90 * sd),
                sum(c.n_posts for c in cells), mean, sd,
            )
        )  # fmt: skip
    n_posts = sum(h.n for h in hours)
    return TimingAdvice(True, n_posts, "learned hour-of-week weights", hours)


def batch_seed(batch_id: str) -> int:
    """The slot draw's seed for a batch: the same batch draws the same learned hours on a rerun."""
    return int.from_bytes(batch_id.encode()[-8:].rjust(8, b"\0"), "big")


@dataclass
class LearnedSlots:
    """``slot_times_for`` for ``publishing.scheduling.schedule_batch``, remembering why per platform."""

    store: AnalyticsStore
    default: Sequence[time]
    daily_limit: int
    seed: int
    min_posts: int = MIN_POSTS
    reasons: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def slot_times_for(self, persona: Persona, platform: str) -> list[time] | None:
        persona_id, timezone = persona.id, persona.timezone
        weights = self.store.weights(persona_id, platform, "hour_of_week")
        posts = next(
            (
                a.posts
                for a in self.store.accounts(simulated=False)
                if a.account == persona_id and a.platform == platform
            ),
            0,
        )
        if not weights or posts < self.min_posts:
            self.reasons[(persona_id, platform)] = {
                "slots": [t.strftime("%H:%M") for t in self.default],
                "why": f"default: only {posts} posts (at least {self.min_posts} needed)",
            }
            return None
        count = max(1, min(self.daily_limit, len(self.default)))
        key = hashlib.sha256(f"{self.seed}:{persona_id}:{platform}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(key[:8], "big"))
        chosen = choose_hours(_advice_from_weights(weights), count, rng=rng)
        if not chosen:
            return None
        self.reasons[(persona_id, platform)] = {
            "slots": [f"{c.hour:02d}:00" for c in chosen],
            "timezone": timezone,
            "why": {f"{c.hour:02d}:00": c.why for c in chosen},
            "method": "empirical Bayes hour posteriors, Thompson sampling",
        }
        return [time(c.hour, 0) for c in chosen]

    def explain(self, persona_id: str, platform: str) -> str:
        """One line: the slots used for the persona on the platform, and why (learned or default)."""
        reason = self.reasons.get((persona_id, platform))
        if reason is None:
            return "configured slots (no eligible pieces)"
        slots = ", ".join(reason["slots"])
        why = reason["why"]
        if isinstance(why, dict):
            detail = "; ".join(f"{slot} {text}" for slot, text in why.items())
            return f"{slots} learned ({reason['method']}, {reason['timezone']}): {detail}"
        return f"{slots} configured ({why})"

    def record(self, persona_id: str, platform: str, slots: Sequence[tuple[str, datetime]]) -> None:
        """Record on each scheduled piece why its slot's time was chosen (learned or default)."""
        reason = self.reasons.get((persona_id, platform))
        if reason is None:
            return
        why = reason["why"]
        for piece_id, when in slots:
            if isinstance(why, dict):
                local = when.astimezone(ZoneInfo(reason["timezone"]))
                detail = {"why": why.get(f"{local.hour:02d}:00", "learned slot"), "method": reason["method"]}
            else:
                detail = {"why": why}
            self.store.record_feedback(piece_id, {f"slot:{platform}": {"when": when.isoformat(), **detail}})
