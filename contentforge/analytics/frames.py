"""Frames of posts and their normalized engagement (Buffer's method), the input of every learner.

Normalized engagement compares a post with its own account's recent posts at the same age: a post's
interactions (likes, comments, saves, shares) at ``age_hours`` divided by the rolling median of the
account's previous ``window`` posts at that age. Small and large accounts, and old and new posts,
then compare fairly, and nothing is summed across accounts. Learners work on ``log_norm`` (its
logarithm, so lifts multiply and a viral post does not dominate a mean), clipped to the 2nd-98th
percentiles for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from contentforge.domain.analytics import PostMetrics

ENGAGEMENT_AGE_H = 24
BASELINE_WINDOW = 30
MIN_BASELINE_POSTS = 5
FEATURE_COLUMNS = ("hook_style", "call_to_action", "template_category", "tier")
IMAGE_FEATURES = ("brightness", "contrast", "colourfulness", "sharpness")


def posts_frame(
    observations: Sequence[PostMetrics], *, age_hours: int = ENGAGEMENT_AGE_H, timezone: str = "UTC"
) -> pd.DataFrame:
    """One row per post with a snapshot at ``age_hours``: metrics, local time and features."""
    rows = []
    for o in observations:
        if o.age_hours != age_hours:
            continue
        f = o.features
        rows.append(
            {
                "post_id": o.post_id,
                "posted_at": o.posted_at,
                "reach": o.reach,
                "views": o.views,
                "interactions": o.interactions,
                "hashtags": list(f.get("hashtags") or []),
                "caption_length": int(f.get("caption_length") or 0),
                **{c: f.get(c) for c in FEATURE_COLUMNS},
                **{c: f.get(c) for c in IMAGE_FEATURES if c in f},
                "piece_id": o.piece_id,
            }
        )
    columns = ["post_id", "posted_at", "reach", "views", "interactions", "hashtags", "caption_length",
               *FEATURE_COLUMNS, "piece_id"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns if not rows else None)
    if frame.empty:
        frame["hour"] = pd.Series(dtype=int)
        frame["weekday"] = pd.Series(dtype=int)
        frame["hour_of_week"] = pd.Series(dtype=int)
        return frame
    frame["posted_at"] = pd.to_datetime(frame["posted_at"], utc=True)
    frame = frame.sort_values("posted_at", kind="stable").reset_index(drop=True)
    local = frame["posted_at"].dt.tz_convert(timezone)
    frame["hour"] = local.dt.hour
    frame["weekday"] = local.dt.weekday
    frame["hour_of_week"] = frame["weekday"] * 24 + frame["hour"]
    frame["day"] = local.dt.date
    return frame


def normalize(
    frame: pd.DataFrame, *, window: int = BASELINE_WINDOW, min_history: int = MIN_BASELINE_POSTS
) -> pd.DataFrame:
    """``frame`` with ``baseline``, ``norm`` and ``log_norm``; posts without enough history dropped."""
    out = frame.copy()
    previous = out["interactions"].astype(float).shift(1)
    out["baseline"] = previous.rolling(window, min_periods=min_history).median()
    out = out[out["baseline"].notna()].copy()
    out["norm"] = (out["interactions"] + 1.0) / (out["baseline"] + 1.0)
    log_norm = np.log(out["norm"])
    if len(log_norm) >= 10:
        low, high = log_norm.quantile([0.02, 0.98])
        log_norm = log_norm.clip(low, high)
    out["log_norm"] = log_norm
    return out.reset_index(drop=True)
