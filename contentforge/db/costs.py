"""The cost ledger: what each batch, piece and strategy step paid, each charge recorded once.

A charge carries a ``charge_key`` naming what was paid for (``image:<piece>:<generation>``,
``hooks:<piece>:<platform>``, one model call's id); the key is unique, so a retried task or a
resumed batch repeating a charge never records it twice. Details pass through ``redact`` first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contentforge.db.models import COST_KINDS, STRATEGY_STEPS, BatchORM, CostEntryORM, PersonaORM
from contentforge.db.rows import BatchCost, CostReport, StepCost
from contentforge.db.sessions import Store, insert_for, load_batch, load_piece
from contentforge.errors import InvalidInput
from contentforge.redaction import redact


class CostRepository(Store):
    def charge_generation(
        self,
        piece_id: str,
        *,
        generation_id: str,
        provider: str,
        amount_usd: float,
        detail: Mapping[str, Any] | None = None,
    ) -> bool:
        """Charge one real generation of the piece (kept or discarded); False if it was charged already."""
        with self._db.write() as session:
            piece = load_piece(session, piece_id)
            return charge(
                session,
                f"image:{piece_id}:{generation_id}",
                batch_id=piece.batch_id,
                piece_id=piece_id,
                kind="image",
                provider=provider,
                amount_usd=amount_usd,
                detail=None if detail is None else redact(dict(detail)),
            )

    def add_cost(
        self,
        batch_id: str,
        *,
        kind: str,
        provider: str,
        amount_usd: float,
        piece_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
        charge_key: str | None = None,
    ) -> bool:
        """Record a text or moderation cost (image costs come with ``charge_generation``).

        With ``charge_key`` (what was paid for, e.g. one model call's id) the same charge is recorded
        once however often a retry repeats the call to this method. Returns whether it was recorded.
        """
        if kind not in COST_KINDS:
            raise InvalidInput(f"cost kind must be one of {list(COST_KINDS)}, not {kind!r}")
        with self._db.write() as session:
            load_batch(session, batch_id)
            values: dict[str, Any] = {
                "batch_id": batch_id,
                "piece_id": piece_id,
                "kind": kind,
                "provider": provider,
                "amount_usd": amount_usd,
                "detail": None if detail is None else redact(dict(detail)),
            }
            if charge_key is None:
                session.add(CostEntryORM(**values))
                return True
            return charge(session, charge_key, **values)

    def add_strategy_cost(
        self,
        step: str,
        *,
        provider: str,
        amount_usd: float,
        kind: str = "text",
        brand_id: str | None = None,
        persona_id: str | None = None,
        subject_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a charge of a strategy step (no batch): one model call of research, personas, topics...

        ``brand_id``, ``persona_id`` and ``subject_id`` say what the step worked on; they are not
        checked against their tables, because a call is paid even if its step then fails.
        """
        if step not in STRATEGY_STEPS:
            raise InvalidInput(f"strategy step must be one of {list(STRATEGY_STEPS)}, not {step!r}")
        if kind not in COST_KINDS:
            raise InvalidInput(f"cost kind must be one of {list(COST_KINDS)}, not {kind!r}")
        with self._db.write() as session:
            session.add(
                CostEntryORM(
                    step=step,
                    brand_id=brand_id,
                    persona_id=persona_id,
                    subject_id=subject_id,
                    kind=kind,
                    provider=provider,
                    amount_usd=amount_usd,
                    detail=None if detail is None else redact(dict(detail)),
                )
            )

    def cost_report(self, *, persona_id: str | None = None, brand_id: str | None = None) -> CostReport:
        """What was spent, per batch and per strategy step; optionally for one persona or one brand.

        A persona's costs are its batches' and the strategy steps done for it (topics, posts); a
        brand's are the steps done for it (research, personas, and its personas' topics and posts)
        and the batches of the personas linked to it.
        """
        batch_query = (
            select(
                CostEntryORM.batch_id,
                BatchORM.persona_id,
                CostEntryORM.kind,
                func.count(),
                func.sum(CostEntryORM.amount_usd),
            )
            .join(BatchORM, BatchORM.id == CostEntryORM.batch_id)
            .group_by(CostEntryORM.batch_id, BatchORM.persona_id, CostEntryORM.kind)
        )
        step_query = select(CostEntryORM).where(CostEntryORM.step.is_not(None))
        if persona_id is not None:
            batch_query = batch_query.where(BatchORM.persona_id == persona_id)
            step_query = step_query.where(CostEntryORM.persona_id == persona_id)
        if brand_id is not None:
            brand_personas = select(PersonaORM.id).where(PersonaORM.brand_id == brand_id)
            batch_query = batch_query.where(BatchORM.persona_id.in_(brand_personas))
            step_query = step_query.where(CostEntryORM.brand_id == brand_id)
        batches: dict[str, BatchCost] = {}
        steps: dict[str, StepCost] = {}
        with self._db.read() as session:
            for batch_id, batch_persona, kind, entries, usd in session.execute(batch_query):
                batch = batches.setdefault(
                    str(batch_id), BatchCost(batch_id=str(batch_id), persona_id=batch_persona)
                )
                batch.entries += int(entries)
                batch.usd += float(usd or 0.0)
                batch.usd_by_kind[kind] = float(usd or 0.0)
            # Tokens live in the JSON detail; summing them in Python keeps one query for both backends.
            for entry in session.scalars(step_query.order_by(CostEntryORM.id)):
                line = steps.setdefault(entry.step or "", StepCost(step=entry.step or ""))
                detail = entry.detail or {}
                line.entries += 1
                line.calls += int(detail.get("calls", 1) or 0)
                line.input_tokens += int(detail.get("input_tokens", 0) or 0)
                line.output_tokens += int(detail.get("output_tokens", 0) or 0)
                line.usd += entry.amount_usd
        order = {step: i for i, step in enumerate(STRATEGY_STEPS)}
        return CostReport(
            batches=sorted(batches.values(), key=lambda b: b.batch_id),
            steps=sorted(steps.values(), key=lambda s: order.get(s.step, len(order))),
        )


def charge(session: Session, charge_key: str, *, update_amount: bool = False, **values: Any) -> bool:
    """Insert the cost entry keyed ``charge_key`` unless it exists; True when this call added it.

    ``update_amount`` replaces an existing entry's amount and detail instead (a legacy key that names
    the record rather than one generation).
    """
    stmt = insert_for(session, CostEntryORM).values(charge_key=charge_key, **values)
    if update_amount:
        stmt = stmt.on_conflict_do_update(
            index_elements=["charge_key"],
            set_={"amount_usd": values["amount_usd"], "detail": values.get("detail")},
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=["charge_key"])
    # RETURNING rather than rowcount: psycopg reports no rowcount for an ORM-enabled INSERT.
    return session.execute(stmt.returning(CostEntryORM.id)).scalar() is not None
