"""Reach-drop ("shadowban") detection on a daily series: robust seasonal decomposition plus MAD.

1. ``log`` of daily reach, decomposed with STL (``period=7``, ``robust=True``): the weekly pattern is
   estimated with robustness weights, so a weekend dip is expected and a viral day barely moves it.
   The newest week is judged against the pattern learned before it (see ``_seasonal``).
2. The deseasonalized series is compared, day by day, with the median of the previous 28 days; the
   spread is their MAD (scaled by 1.4826 to a standard deviation). A day is low when it is more than
   ``z`` robust standard deviations *and* ``min_drop`` below that median.
3. A drop is ``consecutive`` low days in a row (one bad day is noise); it is reported once, from its
   first low day, with its depth (the ratio of reach to the baseline). Highs are never alarms.

Too short a series (under ``MIN_DAYS``) concludes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from statsmodels.tsa.seasonal import STL

MIN_DAYS = 35
BASELINE_DAYS = 28
MAD_TO_SD = 1.4826
TAIL_DAYS = 7


def _seasonal(logged: pd.Series) -> pd.Series:
    """STL's weekly component; the last ``TAIL_DAYS`` get the pattern learned before them.

    Fitted on the whole series, STL can absorb a drop that started a few days before the end into
    the weekly pattern it is then compared with (the end of a series has no later cycles to
    contradict it). So the newest week is judged against the pattern of the two weeks before it.
    """
    seasonal = STL(logged, period=7, robust=True).fit().seasonal.copy()
    if len(logged) >= MIN_DAYS + TAIL_DAYS:
        head = STL(logged.iloc[:-TAIL_DAYS], period=7, robust=True).fit().seasonal
        recent = head.iloc[-14:]
        pattern = recent.groupby(recent.index.dayofweek).mean()
        tail = logged.index[-TAIL_DAYS:]
        seasonal.iloc[-TAIL_DAYS:] = [float(pattern[d]) for d in tail.dayofweek]
    return seasonal


@dataclass(frozen=True)
class ReachDrop:
    starts_on: date
    detected_on: date
    """The day the drop became certain (its ``consecutive``-th low day)."""
    depth: float
    """Reach over the baseline on the first low day (0.4 = 60% below)."""
    z: float


@dataclass(frozen=True)
class DropScan:
    enough: bool
    reason: str
    drops: list[ReachDrop]
    deseasonalized: pd.Series
    """Log reach without its weekly pattern, for the dashboard's plot."""


def detect_reach_drops(
    daily_reach: pd.Series,
    *,
    z: float = 3.0,
    min_drop: float = 0.25,
    consecutive: int = 2,
) -> DropScan:
    """Drops in ``daily_reach`` (indexed by day, one value per day; missing days interpolated)."""
    series = daily_reach.dropna().astype(float)
    if len(series) < MIN_DAYS:
        return DropScan(False, f"only {len(series)} days of reach (at least {MIN_DAYS} needed)", [], series)
    index = pd.date_range(pd.Timestamp(series.index.min()), pd.Timestamp(series.index.max()), freq="D")
    series.index = pd.to_datetime(series.index)
    filled = series.reindex(index).interpolate(limit_direction="both")
    logged = np.log1p(filled.clip(lower=0.0))
    deseason = logged - _seasonal(logged)
    values = deseason.to_numpy()
    drops: list[ReachDrop] = []
    run: list[tuple[int, float, float]] = []
    threshold = np.log(1.0 - min_drop)
    for t in range(BASELINE_DAYS, len(values)):
        window = values[t - BASELINE_DAYS : t]
        median = float(np.median(window))
        spread = max(MAD_TO_SD * float(np.median(np.abs(window - median))), 1e-6)
        gap = float(values[t] - median)
        if gap < threshold and gap / spread < -z:
            run.append((t, gap, gap / spread))
            if len(run) == consecutive:
                first, first_gap, first_z = run[0]
                drops.append(
                    ReachDrop(
                        starts_on=index[first].date(),
                        detected_on=index[t].date(),
                        depth=float(np.exp(first_gap)),
                        z=first_z,
                    )
                )
        else:
            run = []
    return DropScan(True, f"STL + MAD over {len(series)} days", drops, deseason)
