"""Read queries the API needs beyond ``Repository``: filtered, paginated content and persona totals.

Read-only, short transactions in the repository's session policy (``contentforge.db.sessions``:
SQLite reads ``BEGIN`` deferred, so they run beside a batch that is writing).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload

from contentforge.db.batches import effective_status
from contentforge.db.models import (
    COST_KINDS,
    PIECE_STATUSES,
    BatchORM,
    CostEntryORM,
    HookORM,
    PieceORM,
)
from contentforge.db.sessions import SessionPolicy
from contentforge.domain.models import Hook, PieceStatus

ImageUrl = Callable[[PieceORM], str | None]


class ContentQueries:
    def __init__(self, engine: Engine | SessionPolicy, image_url: ImageUrl) -> None:
        self._db = SessionPolicy.of(engine)
        self._image_url = image_url

    def _read(self) -> AbstractContextManager[Session]:
        return self._db.read()

    def persona_content(
        self,
        persona_id: str,
        *,
        tier: str | None = None,
        platform: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]:
        """(total matching, one page of pieces): newest batch first, plan order within a batch."""
        conditions = [PieceORM.persona_id == persona_id]
        if tier is not None:
            conditions.append(PieceORM.tier == tier)
        if status is not None:
            conditions.append(PieceORM.status == status)
        if platform is not None:
            conditions.append(BatchORM.platform == platform)
        order = (BatchORM.started_at.desc(), PieceORM.batch_id, PieceORM.index)
        with self._read() as session:
            total = session.scalar(
                select(func.count()).select_from(PieceORM).join(BatchORM).where(*conditions)
            )
            # The page's ids first, then only those rows in full: sorting a persona's thousands of pieces
            # by narrow keys instead of whole rows (prompts, JSON) keeps deep pages cheap (issue 18).
            page = session.scalars(
                select(PieceORM.id)
                .join(BatchORM)
                .where(*conditions)
                .order_by(*order)
                .limit(limit)
                .offset(offset)
            ).all()
            rows = session.execute(
                select(PieceORM, BatchORM.platform)
                .join(BatchORM)
                .where(PieceORM.id.in_(page))
                .options(selectinload(PieceORM.hooks))
                .order_by(*order)
            ).all()
            return int(total or 0), self._with_costs(session, [self._piece(p, plat) for p, plat in rows])

    def batch_pieces(self, batch_id: str) -> list[dict[str, Any]]:
        with self._read() as session:
            rows = session.execute(
                select(PieceORM, BatchORM.platform)
                .join(BatchORM)
                .where(PieceORM.batch_id == batch_id)
                .options(selectinload(PieceORM.hooks))
                .order_by(PieceORM.index)
            ).all()
            return self._with_costs(session, [self._piece(piece, platform) for piece, platform in rows])

    def batch_storage_keys(self, batch_id: str, *, status: str | None = None) -> list[dict[str, Any]]:
        """Each piece's id, index, status, tier and storage key (None before its image is stored)."""
        query = select(
            PieceORM.id, PieceORM.index, PieceORM.status, PieceORM.tier, PieceORM.storage_key
        ).where(PieceORM.batch_id == batch_id)
        if status is not None:
            query = query.where(PieceORM.status == status)
        with self._read() as session:
            return [dict(row._mapping) for row in session.execute(query.order_by(PieceORM.index))]

    def piece(self, piece_id: str) -> dict[str, Any] | None:
        with self._read() as session:
            row = session.execute(
                select(PieceORM, BatchORM.platform)
                .join(BatchORM)
                .where(PieceORM.id == piece_id)
                .options(selectinload(PieceORM.hooks))
            ).first()
            return None if row is None else self._with_costs(session, [self._piece(row[0], row[1])])[0]

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        with self._read() as session:
            batch = session.get(BatchORM, batch_id)
            if batch is None:
                return None
            return {
                "batch_id": batch.id,
                "persona_id": batch.persona_id,
                "platform": batch.platform,
                "status": effective_status(batch),
                "num_pieces": batch.num_pieces,
                "flow_run_id": batch.flow_run_id,
            }

    def pieces_by_status(self, batch_id: str) -> dict[str, int] | None:
        """Counts by status, or None when the batch does not exist (yet)."""
        with self._read() as session:
            if session.get(BatchORM, batch_id) is None:
                return None
            counts = dict.fromkeys(PIECE_STATUSES, 0)
            for status, count in session.execute(
                select(PieceORM.status, func.count())
                .where(PieceORM.batch_id == batch_id)
                .group_by(PieceORM.status)
            ):
                counts[status] = count
            return counts

    def persona_stats(self, persona_id: str) -> dict[str, Any]:
        with self._read() as session:
            mine = PieceORM.persona_id == persona_id

            def grouped(column: Any, *joins: Any) -> dict[str, int]:
                query = select(column, func.count()).select_from(PieceORM)
                for target in joins:
                    query = query.join(target)
                query = query.where(mine, column.is_not(None)).group_by(column)
                return {str(key): int(count) for key, count in session.execute(query)}

            by_status = dict.fromkeys(PIECE_STATUSES, 0) | grouped(PieceORM.status)
            generated, seconds_mean = session.execute(
                select(func.count(PieceORM.content_sha256), func.avg(PieceORM.generation_seconds)).where(mine)
            ).one()
            batch_ids = select(BatchORM.id).where(BatchORM.persona_id == persona_id)
            cost_by_kind = dict.fromkeys(COST_KINDS, 0.0) | {
                kind: float(total)
                for kind, total in session.execute(
                    select(CostEntryORM.kind, func.sum(CostEntryORM.amount_usd))
                    .where(CostEntryORM.batch_id.in_(batch_ids))
                    .group_by(CostEntryORM.kind)
                )
            }
            # Strategy steps (topics, blog posts, social posts) have no batch; they name the persona.
            cost_by_step = {
                str(step): float(total)
                for step, total in session.execute(
                    select(CostEntryORM.step, func.sum(CostEntryORM.amount_usd))
                    .where(CostEntryORM.batch_id.is_(None), CostEntryORM.persona_id == persona_id)
                    .group_by(CostEntryORM.step)
                )
            }
            batches = session.scalar(select(func.count()).where(BatchORM.persona_id == persona_id))
            latest = session.scalar(
                select(BatchORM.id)
                .where(BatchORM.persona_id == persona_id)
                .order_by(BatchORM.started_at.desc(), BatchORM.id.desc())
                .limit(1)
            )
            return {
                "persona_id": persona_id,
                "batches": int(batches or 0),
                "pieces": sum(by_status.values()),
                "generated": int(generated or 0),
                "by_status": by_status,
                "by_tier": grouped(PieceORM.tier),
                "by_platform": grouped(BatchORM.platform, BatchORM),
                "pending_review": by_status.get(PieceStatus.needs_review.value, 0),
                "cost_usd_total": sum(cost_by_kind.values()) + sum(cost_by_step.values()),
                "cost_usd_by_kind": cost_by_kind,
                "strategy_cost_usd_by_step": cost_by_step,
                "generation_seconds_mean": None if seconds_mean is None else float(seconds_mean),
                "latest_batch_id": latest,
            }

    @staticmethod
    def _with_costs(session: Session, pieces: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add each piece's total cost: image, text and moderation entries charged to it."""
        ids = [p["id"] for p in pieces]
        totals: dict[str, float] = {}
        if ids:
            totals = {
                piece_id: float(total)
                for piece_id, total in session.execute(
                    select(CostEntryORM.piece_id, func.sum(CostEntryORM.amount_usd))
                    .where(CostEntryORM.piece_id.in_(ids))
                    .group_by(CostEntryORM.piece_id)
                )
            }
        for piece in pieces:
            piece["cost_usd_total"] = totals.get(piece["id"], 0.0)
        return pieces

    def _piece(self, piece: PieceORM, platform: str | None) -> dict[str, Any]:
        return {
            "id": piece.id,
            "batch_id": piece.batch_id,
            "persona_id": piece.persona_id,
            "platform": platform,
            "index": piece.index,
            "template_id": piece.template_id,
            "template_tier": piece.template_tier,
            "status": piece.status,
            "verdict": piece.verdict,
            "tier": piece.tier,
            "moderation_scores": piece.moderation_scores,
            "moderation_reasons": piece.moderation_reasons,
            "cost_usd": piece.cost_usd,
            "generation_seconds": piece.generation_seconds,
            "seed": piece.seed,
            "prompt": piece.prompt,
            "prompt_quality_gate": piece.prompt_quality_gate,
            "image_url": self._image_url(piece),
            "hooks": [_hook(h) for h in piece.hooks],
            "error": piece.error,
            "created_at": piece.created_at,
            "updated_at": piece.updated_at,
        }


def _hook(row: HookORM) -> dict[str, Any]:
    hook = Hook(
        style=row.style,
        text=row.text,
        call_to_action=row.call_to_action,
        hashtags=list(row.hashtags),
        platform=row.platform,
        quality_gate=row.quality_gate,
    )
    return {**hook.model_dump(mode="json"), "caption": hook.caption}
