"""Predicted engagement of planned pieces: the engagement model applied to what a batch is about to post.

A planned piece becomes one frame row with the features the model was trained on, known before
posting: its template category and tier, its first hook on the platform (style, call to action,
hashtags, caption length), its image features when the image is stored, and its slot (local hour
and weekday; an unscheduled piece uses ``default_when``). Without a usable model there is no
prediction, and the reason says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd

from contentforge.analytics.features import hashtags_in, template_category
from contentforge.analytics.image_features import image_features
from contentforge.analytics.prediction import EngagementModel
from contentforge.db.rows import PieceRow


@dataclass(frozen=True)
class PlannedPrediction:
    piece_id: str
    predicted: float | None
    """Expected normalized engagement (1.0 = the account's typical post); None without a model."""
    when: datetime
    hook_style: str | None


def planned_frame(
    pieces: Sequence[PieceRow],
    *,
    platform: str,
    timezone: str,
    when_for: Mapping[str, datetime],
    default_when: datetime,
    image_for: Callable[[str], bytes | None] | None = None,
    features_for: Callable[[PieceRow], Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """One row per piece; image features from ``features_for(piece)`` (a caller that caches them)
    or else measured from ``image_for(storage_key)``."""
    rows = []
    zone = ZoneInfo(timezone)
    for piece in pieces:
        hook = next((h for h in piece.hooks if h.platform.value == platform), None)
        caption = hook.caption if hook is not None else ""
        local = when_for.get(piece.id, default_when).astimezone(zone)
        row = {
            "piece_id": piece.id,
            "when": when_for.get(piece.id, default_when),
            "hour": local.hour,
            "weekday": local.weekday(),
            "caption_length": len(caption),
            "hashtags": [t.lower() for t in hook.hashtags] if hook is not None else hashtags_in(caption),
            "hook_style": hook.style.value if hook is not None else None,
            "call_to_action": hook.call_to_action if hook is not None else None,
            "template_category": template_category(piece.template_id),
            "tier": piece.tier or piece.template_tier,
        }
        if features_for is not None:
            row |= dict(features_for(piece))
        elif image_for is not None and piece.storage_key:
            data = image_for(piece.storage_key)
            row |= image_features(data) if data else {}
        rows.append(row)
    return pd.DataFrame(rows)


def predict_planned(model: EngagementModel, frame: pd.DataFrame) -> list[PlannedPrediction]:
    predicted = model.predict(frame) if not frame.empty else None
    return [
        PlannedPrediction(
            str(row["piece_id"]),
            None if predicted is None else float(predicted.loc[index]),
            row["when"],
            row["hook_style"],
        )
        for index, row in frame.iterrows()
    ]
