"""Where each planned piece's image prompt came from, and what the model-written ones cost.

``pieces`` has no column for the prompt source and this is not worth a migration, so the planner
merges it into the batch's ``params`` (a JSON column): ``params["prompt_sources"]`` maps piece id
to ``"llm"`` or ``"rules"``, and ``params["prompt_fallbacks"]`` maps a piece that fell back to the
rules to the (short) reason. A batch planned without a model has no ``prompt_sources``: every prompt
is rule-based. Each paid model answer becomes one ``kind="text"`` cost entry on its piece.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from contentforge.db.models import BatchORM
from contentforge.db.repository import Repository
from contentforge.errors import InvalidInput
from contentforge.text.llm_prompts import ImagePromptOutcome
from contentforge.text.providers.costs import record_text_cost

_MAX_REASON = 300


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
    with Session(repo.engine) as session, session.begin():
        batch = session.get(BatchORM, batch_id)
        if batch is None:
            raise InvalidInput(f"no batch {batch_id!r}")
        params = dict(batch.params or {})
        params["prompt_sources"] = dict(params.get("prompt_sources") or {}) | {
            piece_id: outcome.source for piece_id, outcome in outcomes.items()
        }
        fallbacks = {
            piece_id: outcome.fallback_reason[:_MAX_REASON]
            for piece_id, outcome in outcomes.items()
            if outcome.fallback_reason
        }
        if fallbacks:
            params["prompt_fallbacks"] = dict(params.get("prompt_fallbacks") or {}) | fallbacks
        batch.params = params


def prompt_sources(repo: Repository, batch_id: str) -> dict[str, str]:
    """Piece id to ``"llm"`` or ``"rules"``; empty when the batch was planned without a model."""
    with Session(repo.engine) as session:
        batch = session.get(BatchORM, batch_id)
        if batch is None:
            raise InvalidInput(f"no batch {batch_id!r}")
        return dict((batch.params or {}).get("prompt_sources") or {})
