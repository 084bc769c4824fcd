"""The learn step for one account: frames → posting times, rankings, model, reach drops → weights.

``learn_account`` is pure (observations in, conclusions out), so the benchmark and the tests run it
without a database; ``learn_and_store`` reads the account from the store, saves what it concluded as
learned weights (replacing the previous run's) and records each detected drop as an alert once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from contentforge.analytics.drops import DropScan, ReachDrop, detect_reach_drops
from contentforge.analytics.frames import ENGAGEMENT_AGE_H, normalize, posts_frame
from contentforge.analytics.prediction import MIN_HISTORY, EngagementModel, train_engagement_model
from contentforge.analytics.ranking import MIN_POSTS as MIN_RANK_POSTS
from contentforge.analytics.ranking import RANKED_KINDS, Ranking, rank
from contentforge.analytics.timing import MIN_POSTS as MIN_TIMING_POSTS
from contentforge.analytics.timing import TimingAdvice, estimate_posting_times, platform_prior
from contentforge.db.analytics import ALERT_WINDOW, Alert, AnalyticsStore
from contentforge.domain.analytics import AccountDay, LearnedWeight, PostMetrics

MIN_ACCOUNT_DAYS = 35


@dataclass(frozen=True)
class LearnConfig:
    age_hours: int = ENGAGEMENT_AGE_H
    min_posts_timing: int = MIN_TIMING_POSTS
    min_posts_rank: int = MIN_RANK_POSTS
    min_history_model: int = MIN_HISTORY
    drop_z: float = 3.0
    drop_min: float = 0.25
    train_model: bool = True


@dataclass
class AccountLearning:
    account: str
    platform: str
    simulated: bool
    frame: pd.DataFrame
    timing: TimingAdvice
    rankings: dict[str, Ranking]
    model: EngagementModel | None
    drops: DropScan
    reach_source: str
    """``account`` (the platform's daily reach) or ``posts`` (daily median reach of posts at the age)."""
    new_alerts: list[Alert] = field(default_factory=list)

    def weights(self) -> list[LearnedWeight]:
        """What the loop feeds back: hour-of-week lifts (when there is enough data) and the rankings."""
        found: list[LearnedWeight] = []
        if self.timing.enough:
            found += [
                LearnedWeight("hour_of_week", str(h.hour), h.lift, h.lower, h.upper, h.n)
                for h in self.timing.hours_of_week
            ]
        for ranking in self.rankings.values():
            found += ranking.ranked
        return found


def daily_reach_series(days: Sequence[AccountDay], frame: pd.DataFrame) -> tuple[pd.Series, str]:
    """The account's daily reach where the platform gives one, else the posts' daily median reach."""
    account = pd.Series({d.day: d.reach for d in days if d.reach is not None}, dtype=float)
    if len(account) >= MIN_ACCOUNT_DAYS:
        return account.sort_index(), "account"
    if frame.empty:
        return pd.Series(dtype=float), "posts"
    return frame.groupby("day")["reach"].median().astype(float).sort_index(), "posts"


def learn_account(
    observations: Sequence[PostMetrics],
    days: Sequence[AccountDay],
    *,
    account: str,
    platform: str,
    timezone: str = "UTC",
    prior: Mapping[int, float] | None = None,
    config: LearnConfig | None = None,
) -> AccountLearning:
    config = config or LearnConfig()
    simulated = any(o.simulated for o in observations) or any(d.simulated for d in days)
    raw = posts_frame(observations, age_hours=config.age_hours, timezone=timezone)
    frame = normalize(raw)
    timing = estimate_posting_times(frame, prior=prior, min_posts=config.min_posts_timing)
    rankings = {kind: rank(frame, kind, min_posts=config.min_posts_rank) for kind in RANKED_KINDS}
    model = (
        train_engagement_model(frame, min_history=config.min_history_model) if config.train_model else None
    )
    reach, reach_source = daily_reach_series(days, raw)
    drops = detect_reach_drops(reach, z=config.drop_z, min_drop=config.drop_min)
    return AccountLearning(account, platform, simulated, frame, timing, rankings, model, drops, reach_source)


def learn_and_store(
    store: AnalyticsStore,
    account: str,
    platform: str,
    *,
    now: datetime,
    timezone: str = "UTC",
    prior: Mapping[int, float] | None = None,
    config: LearnConfig | None = None,
    alert_window: timedelta = ALERT_WINDOW,
) -> AccountLearning:
    """Learn one account from the store, save its weights, and record drops as alerts once each.

    ``new_alerts`` holds the account's real alerts not yet notified whose detection day is within
    ``alert_window`` of ``now`` (``AnalyticsStore.pending_alerts``): one whose notification failed is
    still there on the next run; old history found on a first run is recorded but not notified, and
    simulated alerts are never sent.
    """
    learning = learn_account(
        store.observations(account, platform),
        store.account_days(account, platform),
        account=account,
        platform=platform,
        timezone=timezone,
        prior=prior,
        config=config,
    )
    store.save_weights(account, platform, learning.weights(), simulated=learning.simulated, computed_at=now)
    for drop in learning.drops.drops:
        store.add_alert(
            account,
            platform,
            "reach_drop",
            drop.starts_on,
            _detail(drop, learning),
            simulated=learning.simulated,
        )
    learning.new_alerts = store.pending_alerts(
        now=now, window=alert_window, account=account, platform=platform
    )
    return learning


def _detail(drop: ReachDrop, learning: AccountLearning) -> dict[str, object]:
    return {
        "starts_on": drop.starts_on.isoformat(),
        "detected_on": drop.detected_on.isoformat(),
        "depth": round(drop.depth, 3),
        "z": round(drop.z, 2),
        "series": learning.reach_source,
        "method": learning.drops.reason,
        "simulated": learning.simulated,
    }


def learn_all(
    store: AnalyticsStore,
    *,
    now: datetime,
    timezone_for: Callable[[str], str | None],
    config: LearnConfig | None = None,
) -> list[AccountLearning]:
    """Learn every account in the store; each hour curve is shrunk toward its platform's prior.

    The prior of a platform is the mean hour curve of its accounts of the same kind (real accounts
    from real ones, simulated from simulated ones, never mixed). ``timezone_for(account)`` is the
    persona's time zone (``None``: UTC, e.g. for an imported or simulated account).
    """
    accounts = store.accounts()
    frames: dict[tuple[str, str, bool], pd.DataFrame] = {}
    for acc in accounts:
        observations = store.observations(
            acc.account, acc.platform, age_hours=(config or LearnConfig()).age_hours
        )
        zone = timezone_for(acc.account) or "UTC"
        frames[(acc.account, acc.platform, acc.simulated)] = normalize(
            posts_frame(observations, timezone=zone)
        )
    results = []
    for acc in accounts:
        peers = [f for (a, p, s), f in frames.items() if p == acc.platform and s == acc.simulated]
        results.append(
            learn_and_store(
                store, acc.account, acc.platform, now=now, timezone=timezone_for(acc.account) or "UTC",
                prior=platform_prior(peers) or None, config=config,
            )
        )  # fmt: skip
    return results
