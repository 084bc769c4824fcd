"""Engagement prediction: gradient boosting on the account's own history, evaluated honestly.

The model (scikit-learn ``GradientBoostingRegressor``) predicts a planned post's ``log_norm``
from what is known before posting: template category, tier, hook style, call to action, caption
length, hashtags, local hour (as a position on the clock) and weekday, and image features
(brightness, contrast, colourfulness, sharpness) where recorded.

Evaluation is time-ordered (``TimeSeriesSplit``: always trained on the past, tested on the future)
and compared with the naive baseline, the training period's median. The model is *used* only when
there are at least ``MIN_HISTORY`` posts and it beats the baseline on mean absolute error with a
positive Spearman correlation; otherwise ``usable`` is False and ``reason`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.model_selection import TimeSeriesSplit

from contentforge.analytics.frames import FEATURE_COLUMNS, IMAGE_FEATURES

MIN_HISTORY = 60
MIN_HASHTAG_POSTS = 5
SPLITS = 5


@dataclass(frozen=True)
class Evaluation:
    usable: bool
    reason: str
    n_posts: int
    spearman: float | None = None
    mae: float | None = None
    baseline_mae: float | None = None
    held_out: list[tuple[float, float]] = field(default_factory=list)
    """(predicted, actual) normalized engagement of every post in a test fold, for predicted vs actual."""


@dataclass
class EngagementModel:
    evaluation: Evaluation
    columns: list[str]
    hashtags: list[str]
    estimator: Any | None = None

    def predict(self, planned: pd.DataFrame) -> pd.Series | None:
        """Predicted normalized engagement (1.0 = typical) per planned post; None when not usable."""
        if self.estimator is None or not self.evaluation.usable:
            return None
        x = design_matrix(planned, self.hashtags).reindex(columns=self.columns, fill_value=0.0)
        return pd.Series(np.exp(self.estimator.predict(x.to_numpy())), index=planned.index)


def design_matrix(frame: pd.DataFrame, hashtags: list[str]) -> pd.DataFrame:
    x = pd.DataFrame(index=frame.index)
    radians = 2 * np.pi * frame["hour"].astype(float) / 24.0
    x["hour_sin"], x["hour_cos"] = np.sin(radians), np.cos(radians)
    x["weekday"] = frame["weekday"].astype(float)
    x["caption_length"] = frame["caption_length"].astype(float)
    x["hashtag_count"] = frame["hashtags"].map(len).astype(float)
    for tag in hashtags:
        x[f"tag:{tag}"] = frame["hashtags"].map(lambda tags, tag=tag: float(tag in tags))
    for column in FEATURE_COLUMNS:
        if column in frame:
            dummies = pd.get_dummies(frame[column].astype("string"), prefix=column, dtype=float)
            x = x.join(dummies)
    for column in IMAGE_FEATURES:
        if column in frame:
            x[column] = frame[column].astype(float)
    return x.fillna(0.0)


def _estimator() -> GradientBoostingRegressor:
    # Single-threaded and exact: on a few hundred posts it is faster than the histogram variant,
    # whose OpenMP threads only contend with the rest of the machine.
    return GradientBoostingRegressor(
        n_estimators=150, learning_rate=0.05, max_depth=3, min_samples_leaf=8, subsample=0.8, random_state=0
    )


def train_engagement_model(frame: pd.DataFrame, *, min_history: int = MIN_HISTORY) -> EngagementModel:
    n = len(frame)
    if n < min_history:
        reason = f"not used: only {n} posts of history (at least {min_history} needed)"
        return EngagementModel(Evaluation(False, reason, n), [], [])
    counts = frame["hashtags"].explode().value_counts()
    hashtags = sorted(str(t) for t, c in counts.items() if c >= MIN_HASHTAG_POSTS)
    x = design_matrix(frame, hashtags)
    y = frame["log_norm"].astype(float).to_numpy()
    maes, base_maes, rhos = [], [], []
    held_out: list[tuple[float, float]] = []
    for train, test in TimeSeriesSplit(n_splits=SPLITS).split(x):
        model = _estimator().fit(x.iloc[train].to_numpy(), y[train])
        predicted = model.predict(x.iloc[test].to_numpy())
        held_out += [(float(np.exp(p)), float(np.exp(a))) for p, a in zip(predicted, y[test], strict=True)]
        maes.append(float(np.mean(np.abs(predicted - y[test]))))
        base_maes.append(float(np.mean(np.abs(np.median(y[train]) - y[test]))))
        # A constant prediction (a fold too small to split on) ranks nothing: correlation 0.
        constant = np.ptp(predicted) == 0 or np.ptp(y[test]) == 0
        rho = 0.0 if constant else pd.Series(predicted).corr(pd.Series(y[test]), method="spearman")
        rhos.append(0.0 if np.isnan(rho) else float(rho))
    mae, base_mae, rho = float(np.mean(maes)), float(np.mean(base_maes)), float(np.mean(rhos))
    usable = mae < base_mae and rho > 0.0
    verdict = "used" if usable else "not used: it does not beat the account's median"
    reason = (
        f"{verdict} (time-ordered CV over {n} posts: MAE {mae:.3f} vs median baseline {base_mae:.3f}, "
        f"Spearman {rho:.2f})"
    )
    evaluation = Evaluation(usable, reason, n, rho, mae, base_mae, held_out)
    estimator = _estimator().fit(x.to_numpy(), y) if usable else None
    return EngagementModel(evaluation, list(x.columns), hashtags, estimator)
