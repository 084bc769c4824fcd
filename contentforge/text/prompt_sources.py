"""Where each planned piece's image prompt came from, and what the model-written ones cost.

Each piece records its prompt source (``pieces.prompt_source``: ``"llm"`` or ``"rules"``) and, for a
piece whose model prompt fell back to the rules, the (short) reason (``pieces.prompt_fallback``). A
batch planned without a model records no source: every prompt is rule-based. Each paid model answer
becomes one ``kind="text"`` cost entry on its piece.
"""

from __future__ import annotations

from collections.abc import Mapping

from contentforge.db.repository import RecordNotFound, Repository
from contentforge.errors import InvalidInput
from contentforge.text.llm_prompts import ImagePromptOutcome
from contentforge.text.providers.costs import record_text_cost


def record_planned_prompts(
    repo: Repository, batch_id: str, outcomes: Mapping[str, ImagePromptOutcome]
) -> None:
    """Charge each paid model answer to its piece and store every piece's prompt source.

    Call after the pieces are saved (a cost entry refers to its piece).
    """
    if not outcomes:
        return
    for piece_id, outcome in outcomes.items():
        if outcome.result is not None and outcome.result.result.provider != "offline":
            record_text_cost(repo, batch_id, outcome.result, piece_id=piece_id)
    sources = {
        piece_id: (outcome.source, outcome.fallback_reason or None) for piece_id, outcome in outcomes.items()
    }
    try:
        repo.set_prompt_sources(batch_id, sources)
    except RecordNotFound:
        raise InvalidInput(f"no batch {batch_id!r}") from None


def prompt_sources(repo: Repository, batch_id: str) -> dict[str, str]:
    """Piece id to ``"llm"`` or ``"rules"``; empty when the batch was planned without a model."""
    try:
        return repo.prompt_sources(batch_id)
    except RecordNotFound:
        raise InvalidInput(f"no batch {batch_id!r}") from None
