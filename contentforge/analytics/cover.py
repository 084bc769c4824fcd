"""Cover scoring: among a piece's candidate images (seed variations, renditions), pick the cover.

Each candidate gets its image features; with a usable engagement model (``prediction``) the score
is the model's predicted normalized engagement for the planned post with that image, otherwise the
closeness of its features to the account's top-performing posts (the top quarter by normalized
engagement). Every candidate is told what differs by more than ``tolerance`` from those top posts,
measured: "contrast 30% below your top-performing posts".

``choose_covers`` is the caller for a batch: a piece's candidates are its own image and those of its
seed variations (``contentforge variations``: pieces whose parent is the piece); the best-scored one
is the cover, and ``record_covers`` keeps the choice, every candidate's score and the advice on the
piece (``piece_feedback``, key ``cover:<platform>``), where the CLI, the API and the gallery read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from contentforge.analytics.frames import IMAGE_FEATURES
from contentforge.analytics.image_features import image_features
from contentforge.analytics.planned import planned_frame
from contentforge.analytics.prediction import EngagementModel
from contentforge.db.analytics import AnalyticsStore
from contentforge.db.rows import PieceRow
from contentforge.errors import InvalidInput

MIN_REFERENCE_POSTS = 8


@dataclass(frozen=True)
class CoverScore:
    name: str
    score: float
    method: str
    features: dict[str, float]
    advice: list[str] = field(default_factory=list)


def top_posts_profile(frame: pd.DataFrame) -> dict[str, float]:
    """Mean image features of the account's top quarter of posts (by normalized engagement)."""
    present = [c for c in IMAGE_FEATURES if c in frame]
    rows = frame.dropna(subset=present) if present else frame.iloc[0:0]
    if len(rows) < MIN_REFERENCE_POSTS:
        raise InvalidInput(
            f"cover scoring needs image features of at least {MIN_REFERENCE_POSTS} posts; "
            f"this account has {len(rows)}"
        )
    top = rows[rows["log_norm"] >= rows["log_norm"].quantile(0.75)]
    return {c: float(top[c].mean()) for c in present}


def _advice(features: Mapping[str, float], profile: Mapping[str, float], tolerance: float) -> list[str]:
    notes = []
    for name, target in profile.items():
        if target <= 0:
            continue
        change = features[name] / target - 1.0
        if abs(change) > tolerance:
            notes.append(
                f"{name} {abs(change):.0%} {'below' if change < 0 else 'above'} your top-performing posts"
            )
    return notes


def score_covers(
    candidates: Mapping[str, bytes],
    frame: pd.DataFrame,
    *,
    planned: pd.DataFrame | None = None,
    model: EngagementModel | None = None,
    tolerance: float = 0.2,
) -> list[CoverScore]:
    """Candidates best first. ``planned`` is the planned post as one frame row (for the model)."""
    profile = top_posts_profile(frame)
    scored = []
    for name, data in candidates.items():
        features = image_features(data)
        score, method = None, "closeness to the top-performing posts' image features"
        if model is not None and planned is not None and model.evaluation.usable:
            row = planned.iloc[[0]].copy()
            for key, value in features.items():
                row[key] = value
            predicted = model.predict(row)
            if predicted is not None:
                score, method = float(predicted.iloc[0]), "predicted normalized engagement (engagement model)"
        if score is None:
            distance = sum(abs(features[k] / v - 1.0) for k, v in profile.items() if v > 0)
            score = 1.0 / (1.0 + distance)
        scored.append(CoverScore(name, score, method, features, _advice(features, profile, tolerance)))
    return sorted(scored, key=lambda c: -c.score)


@dataclass(frozen=True)
class CoverChoice:
    piece_id: str
    platform: str
    candidates: list[CoverScore]
    """Best first; ``candidates[0]`` is the cover."""

    @property
    def chosen(self) -> str:
        return self.candidates[0].name

    def as_record(self) -> dict[str, Any]:
        """What ``record_covers`` keeps on the piece: the cover, how it was scored, every candidate."""
        return {
            "chosen": self.chosen,
            "method": self.candidates[0].method,
            "candidates": [
                {"piece_id": c.name, "score": round(c.score, 4), "features": c.features, "advice": c.advice}
                for c in self.candidates
            ],
        }


def _image(image_for: Callable[[str], bytes | None], key: str | None) -> bytes | None:
    if key is None:
        return None
    try:
        return image_for(key)
    except (OSError, KeyError):  # gone from storage: not a candidate
        return None


def choose_covers(
    pieces: Sequence[PieceRow],
    history: pd.DataFrame,
    *,
    variations_of: Callable[[str], Sequence[PieceRow]],
    image_for: Callable[[str], bytes | None],
    platform: str,
    timezone: str,
    when_for: Mapping[str, datetime],
    default_when: datetime,
    model: EngagementModel | None = None,
    tolerance: float = 0.2,
) -> list[CoverChoice]:
    """The cover of every piece with a stored image (variations count as their parent's candidates).

    Raises ``InvalidInput`` once, before any image is read, when the account's history is too thin
    (``top_posts_profile``).
    """
    top_posts_profile(history)
    choices = []
    for piece in pieces:
        if piece.parent_piece_id is not None:
            continue
        family = [piece, *variations_of(piece.id)]
        candidates = {p.id: data for p in family if (data := _image(image_for, p.storage_key))}
        if not candidates:
            continue
        planned = planned_frame(
            [piece], platform=platform, timezone=timezone, when_for=when_for, default_when=default_when
        )
        scored = score_covers(candidates, history, planned=planned, model=model, tolerance=tolerance)
        choices.append(CoverChoice(piece.id, platform, scored))
    return choices


def record_covers(store: AnalyticsStore, choices: Sequence[CoverChoice]) -> None:
    for choice in choices:
        store.record_feedback(choice.piece_id, {f"cover:{choice.platform}": choice.as_record()})
