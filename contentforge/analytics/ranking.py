"""What works: hashtags, hook styles, calls to action, template categories and tiers ranked by lift.

For each value of a feature, the posts that have it are compared with those that do not, on
``log_norm``: lift = exp(mean with − mean without), with a 90% interval from Welch's standard error.
A value used by fewer than ``min_posts`` posts gets no lift at all (it is listed as untested), so a
hashtag used twice can never top the ranking by luck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from contentforge.domain.analytics import LearnedWeight

MIN_POSTS = 8
Z90 = 1.645
RANKED_KINDS = ("hashtag", "hook_style", "call_to_action", "template_category", "tier")
_COLUMN = {"hashtag": "hashtags", "hook_style": "hook_style", "call_to_action": "call_to_action",
           "template_category": "template_category", "tier": "tier"}  # fmt: skip


@dataclass(frozen=True)
class Ranking:
    kind: str
    ranked: list[LearnedWeight]
    """Values with enough posts, best lift first."""
    untested: dict[str, int]
    """Values with fewer than ``min_posts`` posts → how many they have."""


def rank(frame: pd.DataFrame, kind: str, *, min_posts: int = MIN_POSTS) -> Ranking:
    if kind not in _COLUMN:
        raise ValueError(f"unknown ranking kind {kind!r}; known: {', '.join(RANKED_KINDS)}")
    column = _COLUMN[kind]
    if frame.empty or column not in frame:
        return Ranking(kind, [], {})
    y = frame["log_norm"].astype(float)
    if kind == "hashtag":
        membership = frame[column].map(lambda tags: {str(t) for t in tags or ()})
        values = sorted({t for tags in membership for t in tags})
        has = {v: membership.map(lambda tags, v=v: v in tags) for v in values}
    else:
        present = frame[column].dropna().astype(str)
        values = sorted(present.unique())
        has = {v: frame[column].astype(str) == v for v in values}
    ranked: list[LearnedWeight] = []
    untested: dict[str, int] = {}
    for value in values:
        mask = has[value]
        n_with, n_without = int(mask.sum()), int((~mask).sum())
        if n_with < min_posts or n_without < 2:
            untested[value] = n_with
            continue
        with_, without = y[mask], y[~mask]
        diff = float(with_.mean() - without.mean())
        se = math.sqrt(float(with_.var(ddof=1)) / n_with + float(without.var(ddof=1)) / n_without)
        ranked.append(
            LearnedWeight(
                kind, value, math.exp(diff), math.exp(diff - Z90 * se), math.exp(diff + Z90 * se), n_with
            )
        )
    ranked.sort(key=lambda w: w.lift, reverse=True)
    return Ranking(kind, ranked, untested)
