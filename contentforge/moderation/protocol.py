"""The contract between moderation backends and the policy that turns their scores into a verdict.

Backends only measure (a score in [0, 1] per category, with evidence); the policy alone decides.
Keeping the two apart lets thresholds change through configuration without touching a detector,
and lets several backends (image, text, a remote API later) be combined the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PIL import Image

CATEGORIES: tuple[str, ...] = ("sexual", "violence", "hate", "self_harm", "harassment")
"""Every category a backend may score; a category a backend does not cover simply scores 0."""


@dataclass(frozen=True)
class ModerationInput:
    """One piece to moderate: its image (if any) and every text that would be published with it."""

    image: Image.Image | None
    texts: Sequence[str] = ()


@dataclass(frozen=True)
class CategoryScores:
    """What one backend measured: a score per category and human-readable evidence.

    Scores are validated here so that a buggy backend (a logit instead of a probability, a typo in
    a category name) fails loudly instead of silently passing a piece.
    """

    scores: Mapping[str, float]
    reasons: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        unknown = set(self.scores) - set(CATEGORIES)
        if unknown:
            raise ValueError(
                f"unknown moderation categories {sorted(unknown)}; expected some of {CATEGORIES}"
            )
        for category, score in self.scores.items():
            if not (isinstance(score, int | float) and math.isfinite(score) and 0.0 <= score <= 1.0):
                raise ValueError(f"moderation score for {category!r} must be in [0, 1], got {score!r}")
        # Fill the categories the backend does not cover so consumers never need .get(..., 0).
        object.__setattr__(self, "scores", {c: float(self.scores.get(c, 0.0)) for c in CATEGORIES})

    @classmethod
    def zero(cls, reasons: list[str] | None = None) -> CategoryScores:
        """Scores for a backend that found nothing (or had nothing to look at)."""
        return cls({}, list(reasons or []))


@runtime_checkable
class ModerationBackend(Protocol):
    """Anything that scores a piece; ``name`` appears in verdict reasons and in ``backends``."""

    name: str

    def scores(self, item: ModerationInput) -> CategoryScores: ...
