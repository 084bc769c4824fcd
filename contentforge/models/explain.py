"""The decision explainer: one readable line for what AUTO or ASSISTED chose, and why.

Stored in the generation record's ``extra`` under ``DECISION_KEY`` (so it travels into the image's
provenance, the piece row and ``contentforge verify``), and shown in the gallery and summaries.
"""

from __future__ import annotations

from contentforge.models.optimizer import ParameterChoice
from contentforge.models.recommender import Recommendation

DECISION_KEY = "decision"
MODE_KEY = "mode"


def explain(recommendation: Recommendation | None, parameters: ParameterChoice | None) -> str:
    """E.g. "LoRA film-grain 0.45 (similarity 0.71 to 'grainy 35mm'), 28 steps (quality priority, …)"."""
    parts = []
    if recommendation is not None:
        parts.append(recommendation.line())
        if recommendation.analysis.source != "rules":
            parts.append(f"prompt read by {recommendation.analysis.source}")
    if parameters is not None:
        parts.append(parameters.line())
    return "; ".join(parts) or "nothing recommended"
