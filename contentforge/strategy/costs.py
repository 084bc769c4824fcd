"""Strategy steps' model calls in the cost ledger, one entry per paid call.

Strategy steps (brand research, persona proposals, topic plans, blog posts, social posts) run
outside any batch, so their charges carry the step and what it worked on instead of a batch id.
The listener is handed to the provider chain (``build_text_provider(settings, on_call=...)``) and
writes each call the moment it returns, so a call is on the ledger even when its step then falls
back to the offline rules or fails: a structured answer that needed a repair is two entries, and a
model whose answer never validated is still charged.

The offline engine makes no calls and costs nothing, so an offline-only run adds **no** entries:
the ledger lists money spent, not work done (the saved rows' ``source`` says who wrote them).
"""

from __future__ import annotations

from dataclasses import dataclass

from contentforge.db.repository import Repository
from contentforge.text.providers.costs import cost_detail
from contentforge.text.providers.protocol import CallListener, TextResult


@dataclass(frozen=True)
class StrategyCharge:
    """What a strategy step's calls are charged to.

    ``step`` is one of ``contentforge.db.models.STRATEGY_STEPS``; ``subject_id`` is what the step
    produces when that is narrower than the persona or brand (the month of a topic plan, a post id).
    """

    step: str
    brand_id: str | None = None
    persona_id: str | None = None
    subject_id: str | None = None


def ledger_listener(repo: Repository, charge: StrategyCharge) -> CallListener:
    """A ``CallListener`` that writes each paid call as a ``kind="text"`` entry charged to ``charge``."""

    def record(result: TextResult) -> None:
        repo.add_strategy_cost(
            charge.step,
            provider=result.provider,
            amount_usd=result.cost_usd,
            brand_id=charge.brand_id,
            persona_id=charge.persona_id,
            subject_id=charge.subject_id,
            detail=cost_detail(result),
        )

    return record
