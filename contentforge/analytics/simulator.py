"""SIMULATOR: a made-up audience with planted effects, for demos and tests. Its data are not real.

Everything it produces has ``source="simulated"`` (and so ``simulated=True`` in the database), and
the store refuses to put it in an account that holds real data. It exists so that a new user can see
the dashboards offline and so that tests can check that learning recovers effects that are known
because they were planted:

* a best posting hour (local time): reach peaks there, falling off as a Gaussian over the hours;
* hashtags, hook styles, calls to action and template categories with known multiplicative lifts;
* weekly seasonality (weekends differ from weekdays), log-normal noise, occasional viral outliers;
* an injected reach drop: from a given day, reach is multiplied by a factor (a "shadowban").

The planted effects are returned with the data (``SimulatedAccount.effects``) so a test can compare.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from contentforge.analytics.protocol import RemoteMetrics, RemotePost
from contentforge.domain.analytics import DEFAULT_SNAPSHOT_AGES_H, AccountDay, PostMetrics

SOURCE = "simulated"
HASHTAG_POOL = ("fitfam", "gymtok", "legday", "mondaymotivation", "healthyhabits", "runclub", "homeworkout")
HOOK_STYLES = ("question", "challenge", "story", "tip", "teaser", "relatable")
CALLS_TO_ACTION = ("Save this for later.", "Tag a friend.", "Follow for more.", "Comment your take.")
CATEGORIES = ("fitness", "lifestyle", "food", "nature")
POSTING_HOURS = tuple(range(7, 23))
"""Local hours the simulated account posts at (uniformly), so every hour gets evidence."""


@dataclass(frozen=True)
class PlantedEffects:
    """The truth a learner should recover. Lifts are multiplicative on interactions (1.0 = none)."""

    best_hour: int = 19
    hour_peak_lift: float = 1.8
    """Reach at the best hour relative to the worst hours; Gaussian in hour distance (sd 2 h)."""
    hashtag_lifts: dict[str, float] = field(default_factory=lambda: {"gymtok": 1.5, "mondaymotivation": 0.7})
    hook_style_lifts: dict[str, float] = field(default_factory=lambda: {"question": 1.4, "teaser": 0.75})
    cta_lifts: dict[str, float] = field(default_factory=lambda: {"Save this for later.": 1.25})
    category_lifts: dict[str, float] = field(default_factory=lambda: {"food": 1.3})
    weekday_lifts: tuple[float, ...] = (0.95, 0.95, 1.0, 1.0, 1.05, 1.2, 1.15)
    """Monday … Sunday: weekly seasonality of reach."""
    noise_sigma: float = 0.25
    """Log-normal noise of a post's interactions."""
    day_noise_sigma: float = 0.08
    viral_probability: float = 0.015
    viral_multiplier: float = 8.0
    drop_start: date | None = None
    drop_factor: float = 0.35
    """Reach from ``drop_start`` on is multiplied by this (an injected reach drop)."""


@dataclass(frozen=True)
class SimulatedAccount:
    """A simulated account's posts (snapshots at every reached age), daily series and its truth."""

    account: str
    platform: str
    timezone: str
    effects: PlantedEffects
    observations: list[PostMetrics]
    days: list[AccountDay]


def _hour_lift(hour: int, effects: PlantedEffects) -> float:
    distance = min(abs(hour - effects.best_hour), 24 - abs(hour - effects.best_hour))
    return 1.0 + (effects.hour_peak_lift - 1.0) * math.exp(-(distance**2) / (2 * 2.0**2))


def _age_fraction(age_hours: float) -> float:
    """Share of a post's final interactions it has after ``age_hours`` (saturating)."""
    return 1.0 - math.exp(-age_hours / 14.0)


def simulate_account(
    account: str,
    *,
    platform: str = "instagram",
    days: int = 90,
    end: datetime,
    seed: int = 0,
    effects: PlantedEffects | None = None,
    posts_per_day: float = 1.5,
    followers: int = 20_000,
    timezone: str = "UTC",
    ages: Sequence[int] = DEFAULT_SNAPSHOT_AGES_H,
) -> SimulatedAccount:
    """``days`` of simulated history ending at ``end`` (UTC); deterministic for a given ``seed``."""
    effects = effects or PlantedEffects()
    rng = np.random.default_rng(seed)
    zone = ZoneInfo(timezone)
    end = end.astimezone(UTC)
    first_day = (end - timedelta(days=days)).astimezone(zone).date()
    observations: list[PostMetrics] = []
    account_days: list[AccountDay] = []
    base_reach = followers * 0.12
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        weekday = effects.weekday_lifts[day.weekday()]
        dropped = effects.drop_start is not None and day >= effects.drop_start
        drop = effects.drop_factor if dropped else 1.0
        day_noise = float(rng.lognormal(0.0, effects.day_noise_sigma))
        day_reach = 0.0
        for n in range(int(rng.poisson(posts_per_day))):
            hour = int(rng.choice(POSTING_HOURS))
            minute = int(rng.integers(0, 60))
            local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
            posted = local.astimezone(UTC)
            if posted > end - timedelta(hours=min(ages)):
                continue
            tags = [str(t) for t in rng.choice(HASHTAG_POOL, size=2, replace=False)]
            style = str(rng.choice(HOOK_STYLES))
            cta = str(rng.choice(CALLS_TO_ACTION))
            category = str(rng.choice(CATEGORIES))
            tier = "safe" if rng.random() < 0.8 else "suggestive"
            reach = base_reach * weekday * drop * day_noise * _hour_lift(hour, effects)
            reach *= float(rng.lognormal(0.0, 0.1))
            content = math.prod(effects.hashtag_lifts.get(t, 1.0) for t in tags)
            content *= effects.hook_style_lifts.get(style, 1.0) * effects.cta_lifts.get(cta, 1.0)
            content *= effects.category_lifts.get(category, 1.0)
            viral = effects.viral_multiplier if rng.random() < effects.viral_probability else 1.0
            interactions = reach * 0.06 * content * viral * float(rng.lognormal(0.0, effects.noise_sigma))
            reach *= viral**0.5
            day_reach += reach
            caption = f"{style} post #{tags[0]} #{tags[1]} {cta}"
            features = {
                "hashtags": tags,
                "hook_style": style,
                "call_to_action": cta,
                "template_category": category,
                "tier": tier,
                "caption_length": len(caption),
            }
            post_id = f"sim-{account}-{offset:04d}-{n}"
            for age in ages:
                collected = posted + timedelta(hours=age)
                if collected > end:
                    break
                share = _age_fraction(age)
                total = interactions * share
                observations.append(
                    PostMetrics(
                        account=account,
                        platform=platform,
                        post_id=post_id,
                        posted_at=posted,
                        age_hours=age,
                        collected_at=collected,
                        source=SOURCE,
                        reach=round(reach * share),
                        views=round(reach * share * 1.6),
                        likes=round(total * 0.8),
                        comments=round(total * 0.05),
                        saves=round(total * 0.1),
                        shares=round(total * 0.05),
                        features=features,
                    )
                )
        # Most of an account's daily reach is its followers seeing it at all (profile, stories,
        # older posts); the day's new posts add to that.
        profile_reach = base_reach * 2.0 * weekday * drop * day_noise
        followers = int(followers * (1.0 + float(rng.normal(0.001, 0.0005))))
        account_days.append(
            AccountDay(
                account,
                platform,
                day,
                SOURCE,
                followers=followers,
                reach=round(0.25 * day_reach + profile_reach),
            )
        )
    return SimulatedAccount(account, platform, timezone, effects, observations, account_days)


class SimulatedCollector:
    """The simulator behind the collector protocol: it answers from a simulated account at ``now``."""

    def __init__(self, simulated: SimulatedAccount, now: datetime) -> None:
        self.platform = simulated.platform
        self.simulated = simulated
        self.now = now

    def metrics(self, post_ids: Sequence[str]) -> dict[str, RemoteMetrics]:
        latest: dict[str, PostMetrics] = {}
        for obs in self.simulated.observations:
            if obs.post_id in post_ids and obs.collected_at <= self.now:
                latest[obs.post_id] = obs
        return {
            pid: RemoteMetrics(
                pid,
                {m: int(getattr(o, m)) for m in ("reach", "views", "likes", "comments", "saves", "shares")},
                posted_at=o.posted_at,
            )
            for pid, o in latest.items()
        }

    def list_posts(self, since: datetime, limit: int = 500) -> list[RemotePost]:
        posts = {
            o.post_id: o.posted_at for o in self.simulated.observations if since <= o.posted_at <= self.now
        }
        newest = sorted(posts.items(), key=lambda item: item[1], reverse=True)
        return [RemotePost(pid, at) for pid, at in newest[:limit]]

    def account_days(self, since: date, until: date) -> list[AccountDay]:
        return [d for d in self.simulated.days if since <= d.day <= until]
