"""When to post: expected normalized engagement by hour, shrunk toward a prior when data are thin.

Method (empirical Bayes, stated so it can be checked):

1. ``y`` = a post's ``log_norm`` (see ``frames``). Neighbouring hours share evidence: each hour's
   mean uses its own posts and, at half weight, those of the hours either side (audiences do not
   change at the stroke of the hour).
2. Each hour's mean is shrunk toward the prior (the platform-wide hour curve from other accounts, or
   0 = "a typical post" without one) with weight ``n_h / σ²`` against ``1 / τ²``: ``σ²`` is the
   within-hour variance and ``τ²`` the variance of the true hour effects, estimated from the spread
   of the hour means (method of moments). The posterior's standard deviation gives a 90% interval.
3. Hour-of-week cells are shrunk the same way toward their hour of day.

Below ``min_posts`` it concludes nothing: ``enough`` is False and the reason says "default: only N
posts", and the scheduler keeps the configured slots. Slots are chosen by Thompson sampling from the
posteriors, so an hour that looked poor early still gets tried now and then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MIN_POSTS = 30
Z90 = 1.645
MIN_TAU2 = 1e-4


@dataclass(frozen=True)
class HourEstimate:
    hour: int
    lift: float
    """Expected normalized engagement relative to a typical post (1.0)."""
    lower: float
    upper: float
    n: int
    mean: float
    sd: float
    """Posterior mean and sd of the log lift, for sampling."""


@dataclass(frozen=True)
class TimingAdvice:
    enough: bool
    n_posts: int
    reason: str
    hours: list[HourEstimate] = field(default_factory=list)
    hours_of_week: list[HourEstimate] = field(default_factory=list)
    """``hour`` is ``weekday * 24 + hour`` (Monday = 0), local time."""

    @property
    def best_hour(self) -> int | None:
        return max(self.hours, key=lambda h: h.mean).hour if self.enough and self.hours else None


def _shrink(
    means: pd.Series, counts: pd.Series, prior: pd.Series, sigma2: float
) -> tuple[pd.Series, pd.Series, float]:
    observed = counts > 0
    spread = float(np.var(means[observed] - prior[observed])) if observed.sum() > 1 else 0.0
    noise = float(np.mean(sigma2 / counts[observed])) if observed.any() else 0.0
    tau2 = max(spread - noise, MIN_TAU2)
    precision = counts / sigma2 + 1.0 / tau2
    posterior = (counts / sigma2 * means.fillna(0.0) + prior / tau2) / precision
    return posterior, np.sqrt(1.0 / precision), tau2


def platform_prior(frames: Sequence[pd.DataFrame]) -> dict[int, float]:
    """The platform-wide hour curve: mean ``log_norm`` by local hour over several accounts' frames."""
    joined = pd.concat([f[["hour", "log_norm"]] for f in frames if not f.empty], ignore_index=True)
    if joined.empty:
        return {}
    return {int(h): float(v) for h, v in joined.groupby("hour")["log_norm"].mean().items()}


def _estimates(
    index: Sequence[int], posterior: pd.Series, sd: pd.Series, counts: pd.Series
) -> list[HourEstimate]:
    return [
        HourEstimate(
            hour=int(i),
            lift=math.exp(float(posterior[i])),
            lower=math.exp(float(posterior[i] - Z90 * sd[i])),
            upper=math.exp(float(posterior[i] + Z90 * sd[i])),
            n=int(counts[i]),
            mean=float(posterior[i]),
            sd=float(sd[i]),
        )
        for i in index
    ]


def estimate_posting_times(
    frame: pd.DataFrame, *, prior: Mapping[int, float] | None = None, min_posts: int = MIN_POSTS
) -> TimingAdvice:
    """Per-hour (and hour-of-week) expected lift with 90% intervals, from a normalized frame."""
    n_posts = len(frame)
    if n_posts < min_posts:
        return TimingAdvice(False, n_posts, f"default: only {n_posts} posts (at least {min_posts} needed)")
    hours = pd.RangeIndex(24)
    y = frame["log_norm"].astype(float)
    by_hour = y.groupby(frame["hour"])
    sums = by_hour.sum().reindex(hours, fill_value=0.0)
    counts = by_hour.count().reindex(hours, fill_value=0).astype(float)
    # Neighbouring hours at half weight (circular).
    pooled_sums = sums + 0.5 * (np.roll(sums.to_numpy(), 1) + np.roll(sums.to_numpy(), -1))
    pooled_counts = counts + 0.5 * (np.roll(counts.to_numpy(), 1) + np.roll(counts.to_numpy(), -1))
    means = (pooled_sums / pooled_counts.replace(0.0, np.nan)).astype(float)
    residual = y - frame["hour"].map(by_hour.mean())
    sigma2 = max(float(np.var(residual, ddof=1)), 1e-6)
    prior_series = pd.Series([float((prior or {}).get(h, 0.0)) for h in hours], index=hours)
    posterior, sd, _ = _shrink(means, pd.Series(pooled_counts, index=hours), prior_series, sigma2)
    hour_estimates = _estimates(hours, posterior, sd, counts)

    cells = pd.RangeIndex(168)
    by_cell = y.groupby(frame["hour_of_week"])
    cell_counts = by_cell.count().reindex(cells, fill_value=0).astype(float)
    cell_means = by_cell.mean().reindex(cells)
    cell_prior = pd.Series([float(posterior[c % 24]) for c in cells], index=cells)
    cell_post, cell_sd, _ = _shrink(cell_means, cell_counts, cell_prior, sigma2)
    week_estimates = _estimates(cells, cell_post, cell_sd, cell_counts)
    reason = (
        f"empirical Bayes over {n_posts} posts, shrunk toward the {'platform' if prior else 'flat'} prior"
    )
    return TimingAdvice(True, n_posts, reason, hour_estimates, week_estimates)


@dataclass(frozen=True)
class ChosenHour:
    hour: int
    lift: float
    lower: float
    upper: float
    why: str


def choose_hours(
    advice: TimingAdvice,
    count: int,
    *,
    rng: np.random.Generator,
    allowed: Sequence[int] = tuple(range(7, 23)),
    min_gap_h: int = 2,
) -> list[ChosenHour]:
    """``count`` posting hours by Thompson sampling: one draw per hour from its posterior, best first.

    Drawing rather than taking the best means an hour whose estimate is uncertain still gets posts
    now and then, so the estimate keeps learning instead of freezing on its first guess.
    """
    if not advice.enough:
        return []
    by_hour = {h.hour: h for h in advice.hours if h.hour in allowed}
    draws = {h: rng.normal(e.mean, e.sd) for h, e in by_hour.items()}
    chosen: list[ChosenHour] = []
    for hour in sorted(draws, key=lambda h: -draws[h]):
        if any(min(abs(hour - c.hour), 24 - abs(hour - c.hour)) < min_gap_h for c in chosen):
            continue
        e = by_hour[hour]
        why = (
            f"expected lift {e.lift:.2f} (90% interval {e.lower:.2f}-{e.upper:.2f}, {e.n} posts at "
            f"{hour:02d}:00); drawn by Thompson sampling"
        )
        chosen.append(ChosenHour(hour, e.lift, e.lower, e.upper, why))
        if len(chosen) == count:
            break
    return sorted(chosen, key=lambda c: c.hour)
