"""Where an AUTO or ASSISTED batch keeps each piece's chosen generation parameters and their explanation.

Why on the piece row: every step that builds a piece's request (image grouping, generation, adopting
an image a crashed run stored) reads the row, so the chosen LoRAs, steps, guidance and size are written
into the row's own columns (``loras``, ``steps``, ``guidance_scale``, ``width``, ``height``, and the
``prompt`` with the recommended LoRAs' trigger words) while the piece is still planned; a MANUAL piece
leaves them NULL until it is generated, so its request is built from the settings exactly as before.
The batch's mode and the one-line explanation per piece live in the batch's ``params`` JSON (no new
column), where ``store_piece`` reads the explanation into the generation record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from contentforge.db.models import BatchORM, PieceORM
from contentforge.db.sessions import Store
from contentforge.domain import PieceStatus

MODE_PARAM = "mode"
DECISIONS_PARAM = "decisions"


def decisions_in(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Piece id → the explanation line of what its mode chose, from a batch's ``params`` (empty for a
    MANUAL batch): the API's reads take it with the pieces, in their own snapshot."""
    return {str(k): str(v) for k, v in ((params or {}).get(DECISIONS_PARAM) or {}).items()}


@dataclass(frozen=True)
class PlannedGeneration:
    """What a mode chose for one piece: the request's values and the line that explains them."""

    prompt: str
    steps: int
    guidance_scale: float
    width: int
    height: int
    loras: tuple[dict[str, Any], ...]
    """Each a ``LoraSpec`` as JSON (source, weight_name, trigger_word, scale)."""
    decision: str


class PiecePlans(Store):
    def save(self, batch_id: str, mode: str, plans: Mapping[str, PlannedGeneration]) -> int:
        """Write the plans of the batch's still-planned pieces and the batch's mode; returns how many.

        A piece that already has its image (or failed) is left as it is: a resumed batch never changes
        what was generated.
        """
        written = 0
        with self._db.write() as session:
            batch = session.get(BatchORM, batch_id)
            if batch is None:
                raise LookupError(f"no batch {batch_id!r}")
            decisions = dict((batch.params or {}).get(DECISIONS_PARAM) or {})
            rows = session.scalars(
                select(PieceORM).where(PieceORM.id.in_(list(plans)), PieceORM.batch_id == batch_id)
            )
            for piece in rows:
                if piece.status != PieceStatus.planned.value:
                    continue
                plan = plans[piece.id]
                piece.prompt = plan.prompt
                piece.steps = plan.steps
                piece.guidance_scale = plan.guidance_scale
                piece.width = plan.width
                piece.height = plan.height
                piece.loras = [dict(lora) for lora in plan.loras]
                decisions[piece.id] = plan.decision
                written += 1
            batch.params = {**(batch.params or {}), MODE_PARAM: mode, DECISIONS_PARAM: decisions}
        return written

    def decision_of(self, batch_id: str, piece_id: str) -> tuple[str, str] | None:
        """(mode, explanation) of a piece its batch's mode planned; None for any other piece (MANUAL, or a
        variation planned with its parent's exact request)."""
        with self._db.read() as session:
            params = session.scalar(select(BatchORM.params).where(BatchORM.id == batch_id)) or {}
        decision = decisions_in(params).get(piece_id)
        return None if decision is None else (str(params.get(MODE_PARAM) or "manual"), decision)
