"""Read queries the API needs beyond ``Repository``: filtered, paginated content and persona totals.

Read-only, short transactions in the repository's session policy (``contentforge.db.sessions``:
SQLite reads ``BEGIN`` deferred, so they run beside a batch that is writing).

Each endpoint's reads share one transaction (one pool checkout, one consistent snapshot) and select
columns, not ORM objects: at 100,000 pieces a read's time was mostly building, then detaching, a
page's 50 pieces and 250 hooks as ORM instances, and one round trip per figure (issue 18). A page
of pieces is two statements: the rows with their platform and cost totals (and the total count, for
the content list), then their hooks; an empty page adds the check that the persona or batch exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Engine, Row, func, literal, select, union_all
from sqlalchemy.orm import Session

from contentforge.db.batches import effective_status, grouped_pieces, load_batch_with_stats
from contentforge.db.models import (
    COST_KINDS,
    PIECE_STATUSES,
    BatchORM,
    CostEntryORM,
    HookORM,
    PersonaORM,
    PieceORM,
)
from contentforge.db.sessions import SessionPolicy
from contentforge.domain.models import Hook, PieceStatus


class StoredImage(Protocol):
    """What an image URL is made from: a piece row's storage key (None before its image is stored)."""

    @property
    def storage_key(self) -> str | None: ...


ImageUrl = Callable[[StoredImage], str | None]

# What ``PieceOut`` shows of a piece (and its storage key, for the image URL): never the generation
# record, LoRAs or negative prompt, which only the piece's own pages need.
PIECE_COLUMNS = (
    PieceORM.id,
    PieceORM.batch_id,
    PieceORM.persona_id,
    PieceORM.index,
    PieceORM.template_id,
    PieceORM.template_tier,
    PieceORM.status,
    PieceORM.verdict,
    PieceORM.tier,
    PieceORM.moderation_scores,
    PieceORM.moderation_reasons,
    PieceORM.cost_usd,
    PieceORM.generation_seconds,
    PieceORM.seed,
    PieceORM.prompt,
    PieceORM.prompt_quality_gate,
    PieceORM.storage_key,
    PieceORM.error,
    PieceORM.created_at,
    PieceORM.updated_at,
)
# Every cost charged to the piece (image, text, moderation), summed beside its row: one statement
# for a page instead of a second grouped query.
PIECE_COST_TOTAL = (
    select(func.sum(CostEntryORM.amount_usd))
    .where(CostEntryORM.piece_id == PieceORM.id)
    .correlate(PieceORM)
    .scalar_subquery()
    .label("cost_usd_total")
)


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
    ) -> tuple[int, list[dict[str, Any]]] | None:
        """(total matching, one page of pieces): newest batch first, plan order within a batch.

        None when no persona has this id. The page is sorted by its narrow keys alone (a persona's
        thousands of pieces, never their prompts or JSON), counted in the same pass (a window count
        is evaluated before ``LIMIT``), and only the page's rows are read in full.
        """
        conditions: list[ColumnElement[bool]] = [PieceORM.persona_id == persona_id]
        if tier is not None:
            conditions.append(PieceORM.tier == tier)
        if status is not None:
            conditions.append(PieceORM.status == status)
        if platform is not None:
            conditions.append(BatchORM.platform == platform)
        with self._read() as session:
            page = (
                select(
                    PieceORM.id.label("page_id"),
                    BatchORM.started_at,
                    BatchORM.platform,
                    func.count().over().label("total"),
                )
                .join(BatchORM, BatchORM.id == PieceORM.batch_id)
                .where(*conditions)
                .order_by(BatchORM.started_at.desc(), PieceORM.batch_id, PieceORM.index)
                .limit(limit)
                .offset(offset)
                .subquery("page")
            )
            rows = session.execute(
                select(page.c.total, page.c.platform, *PIECE_COLUMNS, PIECE_COST_TOTAL)
                .join_from(page, PieceORM, PieceORM.id == page.c.page_id)
                .order_by(page.c.started_at.desc(), PieceORM.batch_id, PieceORM.index)
            ).all()
            if rows:  # a piece names its persona (a foreign key): the persona exists
                total = int(rows[0].total)
            elif session.scalar(select(PersonaORM.id).where(PersonaORM.id == persona_id)) is None:
                return None
            elif offset == 0:
                total = 0
            else:  # past the last page: the count alone
                total = int(
                    session.scalar(
                        select(func.count())
                        .select_from(PieceORM)
                        .join(BatchORM, BatchORM.id == PieceORM.batch_id)
                        .where(*conditions)
                    )
                    or 0
                )
            hooks = _hooks(session, HookORM.piece_id.in_([row.id for row in rows])) if rows else {}
            return total, [self._piece(row, hooks) for row in rows]

    def batch_pieces(self, batch_id: str) -> list[dict[str, Any]] | None:
        """Every piece of the batch in plan order; None when no batch has this id (yet)."""
        with self._read() as session:
            rows = session.execute(
                select(BatchORM.platform, *PIECE_COLUMNS, PIECE_COST_TOTAL)
                .join(BatchORM, BatchORM.id == PieceORM.batch_id)
                .where(PieceORM.batch_id == batch_id)
                .order_by(PieceORM.index)
            ).all()
            if not rows:
                exists = session.scalar(select(BatchORM.id).where(BatchORM.id == batch_id))
                return None if exists is None else []
            in_batch = HookORM.piece_id.in_(select(PieceORM.id).where(PieceORM.batch_id == batch_id))
            hooks = _hooks(session, in_batch)
            return [self._piece(row, hooks) for row in rows]

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
        """A ``PieceDetailOut`` as a dict: the piece, its parent and its variations (revision 0016)."""
        with self._read() as session:
            row = session.execute(
                select(BatchORM.platform, *PIECE_COLUMNS, PIECE_COST_TOTAL, PieceORM.parent_piece_id)
                .join(BatchORM, BatchORM.id == PieceORM.batch_id)
                .where(PieceORM.id == piece_id)
            ).first()
            if row is None:
                return None
            variations = session.scalars(
                select(PieceORM.id)
                .where(PieceORM.parent_piece_id == piece_id)
                .order_by(PieceORM.created_at, PieceORM.batch_id, PieceORM.index)
            )
            return self._piece(row, _hooks(session, HookORM.piece_id == piece_id)) | {
                "parent_piece_id": row.parent_piece_id,
                "variation_ids": list(variations),
            }

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        with self._read() as session:
            batch = session.get(BatchORM, batch_id)
            return None if batch is None else _batch(batch)

    def batch_with_stats(self, batch_id: str) -> dict[str, Any] | None:
        """``batch`` with its ``stats`` (``Repository.batch_stats``) from one transaction, or None."""
        with self._read() as session:
            found = load_batch_with_stats(session, batch_id)
            if found is None:
                return None
            batch, stats = found
            return _batch(batch) | {"stats": stats}

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

    def persona_stats(self, persona_id: str) -> dict[str, Any] | None:
        """The persona's totals, or None when no persona has this id: three statements.

        The persona row with its batch count and latest batch; its pieces counted once per
        (status, tier, platform); batch costs by kind and strategy costs by step in one union.
        """
        of_persona = BatchORM.persona_id == persona_id
        with self._read() as session:
            persona = session.execute(
                select(
                    PersonaORM.id,
                    select(func.count())
                    .select_from(BatchORM)
                    .where(of_persona)
                    .scalar_subquery()
                    .label("batches"),
                    select(BatchORM.id)
                    .where(of_persona)
                    .order_by(BatchORM.started_at.desc(), BatchORM.id.desc())
                    .limit(1)
                    .scalar_subquery()
                    .label("latest"),
                ).where(PersonaORM.id == persona_id)
            ).first()
            if persona is None:
                return None
            groups = grouped_pieces(
                session, PieceORM.persona_id == persona_id, PieceORM.status, PieceORM.tier, BatchORM.platform
            )
            by_status = dict.fromkeys(PIECE_STATUSES, 0) | groups.by("status")
            batch_costs = (
                select(
                    literal("kind").label("part"),
                    CostEntryORM.kind.label("key"),
                    func.sum(CostEntryORM.amount_usd).label("total"),
                )
                .where(CostEntryORM.batch_id.in_(select(BatchORM.id).where(of_persona)))
                .group_by(CostEntryORM.kind)
            )
            # Strategy steps (topics, blog posts, social posts) have no batch; they name the persona.
            step_costs = (
                select(literal("step"), CostEntryORM.step, func.sum(CostEntryORM.amount_usd))
                .where(CostEntryORM.batch_id.is_(None), CostEntryORM.persona_id == persona_id)
                .group_by(CostEntryORM.step)
            )
            cost_by_kind = dict.fromkeys(COST_KINDS, 0.0)
            cost_by_step: dict[str, float] = {}
            for row in session.execute(union_all(batch_costs, step_costs)).mappings():
                (cost_by_kind if row["part"] == "kind" else cost_by_step)[row["key"]] = float(row["total"])
            return {
                "persona_id": persona_id,
                "batches": int(persona.batches or 0),
                "pieces": sum(by_status.values()),
                "generated": groups.generated,
                "by_status": by_status,
                "by_tier": groups.by("tier"),
                "by_platform": groups.by("platform"),
                "pending_review": by_status.get(PieceStatus.needs_review.value, 0),
                "cost_usd_total": sum(cost_by_kind.values()) + sum(cost_by_step.values()),
                "cost_usd_by_kind": cost_by_kind,
                "strategy_cost_usd_by_step": cost_by_step,
                "generation_seconds_mean": groups.generation_seconds_mean,
                "latest_batch_id": persona.latest,
            }

    def _piece(self, row: Row[Any], hooks: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """A ``PieceOut`` as a dict, from a row of ``PIECE_COLUMNS`` with platform and cost total."""
        return {
            "id": row.id,
            "batch_id": row.batch_id,
            "persona_id": row.persona_id,
            "platform": row.platform,
            "index": row.index,
            "template_id": row.template_id,
            "template_tier": row.template_tier,
            "status": row.status,
            "verdict": row.verdict,
            "tier": row.tier,
            "moderation_scores": row.moderation_scores,
            "moderation_reasons": row.moderation_reasons,
            "cost_usd": row.cost_usd,
            "cost_usd_total": 0.0 if row.cost_usd_total is None else float(row.cost_usd_total),
            "generation_seconds": row.generation_seconds,
            "seed": row.seed,
            "prompt": row.prompt,
            "prompt_quality_gate": row.prompt_quality_gate,
            "image_url": self._image_url(row),
            "hooks": hooks.get(row.id, []),
            "error": row.error,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }


def _batch(batch: BatchORM) -> dict[str, Any]:
    return {
        "batch_id": batch.id,
        "persona_id": batch.persona_id,
        "platform": batch.platform,
        "status": effective_status(batch),
        "num_pieces": batch.num_pieces,
        "flow_run_id": batch.flow_run_id,
    }


def _hooks(session: Session, which: ColumnElement[bool]) -> dict[str, list[dict[str, Any]]]:
    """The hooks matching ``which`` per piece id, each piece's in (platform, position) order."""
    rows: Sequence[Row[Any]] = session.execute(
        select(
            HookORM.piece_id,
            HookORM.style,
            HookORM.text,
            HookORM.call_to_action,
            HookORM.hashtags,
            HookORM.platform,
            HookORM.quality_gate,
        )
        .where(which)
        .order_by(HookORM.piece_id, HookORM.platform, HookORM.position)
    ).all()
    by_piece: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_piece.setdefault(row.piece_id, []).append(_hook(row))
    return by_piece


def _hook(row: Row[Any]) -> dict[str, Any]:
    """A ``HookOut`` as a dict; the caption is ``Hook.caption`` itself (the published post's text)."""
    fields = {
        "style": row.style,
        "text": row.text,
        "call_to_action": row.call_to_action,
        "hashtags": list(row.hashtags),
        "platform": row.platform,
        "quality_gate": row.quality_gate,
    }
    # Unvalidated on purpose: the response model validates every field once, on the way out.
    return fields | {"caption": Hook.model_construct(**fields).caption}
