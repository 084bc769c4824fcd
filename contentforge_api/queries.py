"""Read queries the API needs beyond ``Repository``: filtered, paginated content and persona totals.

Read-only, short transactions in the repository's session policy (``contentforge.db.sessions``:
SQLite reads ``BEGIN`` deferred, so they run beside a batch that is writing).

Each endpoint's reads share one transaction (one pool checkout) and select columns, not ORM
objects, executed on the session's connection (no ORM loading step per row): at 100,000 pieces a
read's time was mostly building, then detaching, a page's 50 pieces and 250 hooks as ORM instances,
and one round trip per figure (issue 18). A batch's pieces are three statements: its ``params``
(the batch exists, and its mode's decisions), the rows with their platform and cost totals, then
their hooks; the gallery's read takes the batch and its stats instead of the params. The
content list adds one before the rows: the persona's pieces counted per batch, newest first, which
gives the total and the one or two batches the page falls in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Row,
    Select,
    bindparam,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from contentforge.db.batches import BatchHead, GroupedPieces, effective_status, load_batch_with_stats
from contentforge.db.models import (
    COST_KINDS,
    PIECE_STATUSES,
    BatchCostTotalORM,
    BatchORM,
    CostEntryORM,
    HookORM,
    PersonaORM,
    PieceORM,
)
from contentforge.db.piece_plans import decisions_in
from contentforge.db.sessions import SessionPolicy
from contentforge.domain.models import Hook, PieceStatus


class StoredImage(Protocol):
    """What an image URL is made from: a piece row's storage key (None before its image is stored)."""

    @property
    def storage_key(self) -> str | None: ...


ImageUrl = Callable[[StoredImage], str | None]

# What ``PieceOut`` shows of a piece (and its storage key, for the image URL): never the generation
# record, LoRAs or negative prompt, which only the piece's own pages need. ``parent_piece_id`` is a
# column of the row itself, so a list says which piece each variation varies at no extra statement.
PIECE_COLUMNS = (
    PieceORM.id,
    PieceORM.batch_id,
    PieceORM.parent_piece_id,
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


# The statements every read of a batch or page runs, built once: building a statement, with a bind
# parameter per id of a page's 50 pieces, was a tenth of a content page's CPU (issue 18).
_PIECE_ROWS = select(BatchORM.platform, *PIECE_COLUMNS, PIECE_COST_TOTAL).join(
    BatchORM, BatchORM.id == PieceORM.batch_id
)
"""What ``_piece`` is built from: a piece's columns with its batch's platform and its cost total."""
PIECES_OF_BATCH = _PIECE_ROWS.where(PieceORM.batch_id == bindparam("batch_id")).order_by(PieceORM.index)
_HOOK_ROWS = select(
    HookORM.piece_id,
    HookORM.style,
    HookORM.text,
    HookORM.call_to_action,
    HookORM.hashtags,
    HookORM.platform,
    HookORM.quality_gate,
).order_by(HookORM.piece_id, HookORM.platform, HookORM.position)
HOOKS_OF_PIECES = _HOOK_ROWS.where(HookORM.piece_id.in_(bindparam("piece_ids", expanding=True)))
HOOKS_OF_BATCH = _HOOK_ROWS.where(
    HookORM.piece_id.in_(select(PieceORM.id).where(PieceORM.batch_id == bindparam("batch_id")))
)
HOOKS_OF_PIECE = _HOOK_ROWS.where(HookORM.piece_id == bindparam("piece_id"))
PIECE_BY_ID = _PIECE_ROWS.where(PieceORM.id == bindparam("piece_id"))
VARIATIONS_OF_PIECE = (
    select(PieceORM.id)
    .where(PieceORM.parent_piece_id == bindparam("piece_id"))
    .order_by(PieceORM.created_at, PieceORM.batch_id, PieceORM.index)
)
PARAMS_OF_BATCH = select(BatchORM.params).where(BatchORM.id == bindparam("batch_id"))
"""A batch's ``params``, where an AUTO or ASSISTED batch keeps its decisions; no row: no batch."""
PERSONA_EXISTS = select(PersonaORM.id).where(PersonaORM.id == bindparam("persona_id"))


# A persona's stats (``ContentQueries.persona_stats``), built once; bind parameter ``persona_id``.
_OF_PERSONA = BatchORM.persona_id == bindparam("persona_id")
_PERSONA_BATCHES = select(
    PersonaORM.id,
    select(func.count()).select_from(BatchORM).where(_OF_PERSONA).scalar_subquery().label("batches"),
    select(BatchORM.id)
    .where(_OF_PERSONA)
    .order_by(BatchORM.started_at.desc(), BatchORM.id.desc())
    .limit(1)
    .scalar_subquery()
    .label("latest"),
).where(PersonaORM.id == bindparam("persona_id"))
"""The persona row with its batch count and latest batch; no row: no persona."""
_PERSONA_PIECE_GROUPS = GroupedPieces(
    PieceORM.persona_id == bindparam("persona_id"), PieceORM.status, PieceORM.tier, BatchORM.platform
)
_PERSONA_COSTS = union_all(
    select(  # each batch's totals per kind (migration 0022): ~160 rows, not ~5,900 entries
        literal("kind").label("part"),
        BatchCostTotalORM.kind.label("key"),
        func.sum(BatchCostTotalORM.amount_usd).label("total"),
    )
    .where(BatchCostTotalORM.batch_id.in_(select(BatchORM.id).where(_OF_PERSONA)))
    .group_by(BatchCostTotalORM.kind),
    # Strategy steps (topics, blog posts, social posts) have no batch; they name the persona.
    select(literal("step"), CostEntryORM.step, func.sum(CostEntryORM.amount_usd))
    .where(CostEntryORM.batch_id.is_(None), CostEntryORM.persona_id == bindparam("persona_id"))
    .group_by(CostEntryORM.step),
)
"""The persona's costs: per kind over its batches (part ``kind``), per strategy step (part ``step``)."""


@functools.cache
def _content_statements(by_tier: bool, by_status: bool, by_platform: bool) -> tuple[Select[Any], Select[Any]]:
    """A content list's two statements for one combination of filters, built once (as the statements
    above): the persona's matching pieces counted per batch, newest batch first, and one page of them
    from the batches it falls in. Bind parameters: ``persona_id`` and the filters' ``tier``,
    ``status``, ``platform``; the page's ``batch_ids``, ``limit`` and ``skip``."""
    conditions: list[ColumnElement[bool]] = [PieceORM.persona_id == bindparam("persona_id")]
    if by_tier:
        conditions.append(PieceORM.tier == bindparam("tier"))
    if by_status:
        conditions.append(PieceORM.status == bindparam("status"))
    counted = (
        select(PieceORM.batch_id, func.count().label("pieces"))
        .where(*conditions)
        .group_by(PieceORM.batch_id)
        .subquery("counted")
    )
    counts = (  # a piece's persona is its batch's: the persona's ~40 batches, not all of them
        select(counted.c.batch_id, counted.c.pieces)
        .join(BatchORM, BatchORM.id == counted.c.batch_id)
        .where(BatchORM.persona_id == bindparam("persona_id"))
        .order_by(BatchORM.started_at.desc(), counted.c.batch_id)
    )
    if by_platform:
        counts = counts.where(BatchORM.platform == bindparam("platform"))
    page = (
        _PIECE_ROWS.where(PieceORM.batch_id.in_(bindparam("batch_ids", expanding=True)), *conditions)
        .order_by(BatchORM.started_at.desc(), PieceORM.batch_id, PieceORM.index)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("skip", type_=Integer))
    )
    return counts, page


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

        None when no persona has this id. The persona's matching pieces are counted per batch (an
        index scan and ~40 groups, instead of sorting a persona's 2,000 rows with a window count for
        every page: 10 ms of PostgreSQL time per page at 100,000 pieces); the page is then read
        from the batches it falls in alone, in the same order.
        """
        counts, page = _content_statements(tier is not None, status is not None, platform is not None)
        params = {"persona_id": persona_id, "tier": tier, "status": status, "platform": platform}
        with self._read() as session:
            db = one_snapshot(session)  # the counts and the page must agree while reviewers write
            per_batch = db.execute(counts, params).all()
            if not per_batch and db.scalar(PERSONA_EXISTS, {"persona_id": persona_id}) is None:
                return None
            # The batches whose pieces fall in [offset, offset + limit), and how many to skip in the first.
            total, skip, chosen = 0, 0, list[str]()
            for batch_id, pieces in per_batch:
                if total + pieces > offset and total < offset + limit:
                    if not chosen:
                        skip = offset - total
                    chosen.append(batch_id)
                total += pieces
            if not chosen:
                return total, []
            rows = db.execute(page, params | {"batch_ids": chosen, "limit": limit, "skip": skip}).all()
            hooks = _hooks(db, HOOKS_OF_PIECES, piece_ids=[row.id for row in rows]) if rows else {}
            return total, [self._piece(row, hooks) for row in rows]

    def batch_pieces(self, batch_id: str) -> list[dict[str, Any]] | None:
        """Every piece of the batch in plan order, each with its AUTO/ASSISTED ``decision``; None when
        no batch has this id (yet). Three statements in one transaction: the batch's ``params`` (where
        the decisions are kept, and whether the batch exists), its pieces, their hooks."""
        with self._read() as session:
            db = one_snapshot(session)  # a mode's decisions and the rows it planned, as of one moment
            batch = db.execute(PARAMS_OF_BATCH, {"batch_id": batch_id}).first()
            if batch is None:
                return None
            return self._pieces_of_batch(db, batch_id, decisions_in(batch.params))

    def batch_gallery(self, batch_id: str) -> dict[str, Any] | None:
        """What the review gallery shows of a batch, ``{"batch": batch_with_stats, "pieces":
        batch_pieces}``, from one snapshot, or None: the summary's counts are those of the cards
        below it, and one request and transaction instead of two and three (issue 18)."""
        with self._read() as session:
            db = one_snapshot(session)
            found = load_batch_with_stats(session, batch_id)
            if found is None:
                return None
            batch, stats = found
            pieces = self._pieces_of_batch(db, batch_id, decisions_in(batch.params))
            return {"batch": _batch(batch) | {"stats": stats}, "pieces": pieces}

    def _pieces_of_batch(
        self, db: Connection, batch_id: str, decisions: dict[str, str]
    ) -> list[dict[str, Any]]:
        rows = db.execute(PIECES_OF_BATCH, {"batch_id": batch_id}).all()
        if not rows:
            return []
        hooks = _hooks(db, HOOKS_OF_BATCH, batch_id=batch_id)
        return [self._piece(row, hooks, decisions.get(row.id)) for row in rows]

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
        """A ``PieceDetailOut`` as a dict: the piece with its mode's ``decision``, its parent and its
        variations (revision 0016), from one snapshot."""
        with self._read() as session:
            db = one_snapshot(session)
            row = db.execute(PIECE_BY_ID, {"piece_id": piece_id}).first()
            if row is None:
                return None
            decision = decisions_in(db.execute(PARAMS_OF_BATCH, {"batch_id": row.batch_id}).scalar())
            variations = db.execute(VARIATIONS_OF_PIECE, {"piece_id": piece_id}).scalars()
            hooks = _hooks(db, HOOKS_OF_PIECE, piece_id=piece_id)
            return self._piece(row, hooks, decision.get(piece_id)) | {"variation_ids": list(variations)}

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
        (status, tier, platform); its batches' cost totals by kind and strategy costs by step in one
        union.
        """
        with self._read() as session:
            persona = session.execute(_PERSONA_BATCHES, {"persona_id": persona_id}).first()
            if persona is None:
                return None
            groups = _PERSONA_PIECE_GROUPS.read(session, persona_id=persona_id)
            by_status = dict.fromkeys(PIECE_STATUSES, 0) | groups.by("status")
            cost_by_kind = dict.fromkeys(COST_KINDS, 0.0)
            cost_by_step: dict[str, float] = {}
            for row in session.execute(_PERSONA_COSTS, {"persona_id": persona_id}).mappings():
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

    def _piece(
        self, row: Row[Any], hooks: dict[str, list[dict[str, Any]]], decision: str | None = None
    ) -> dict[str, Any]:
        """A ``PieceOut`` as a dict, from a row of ``PIECE_COLUMNS`` with platform and cost total.

        Every field in the model's order, as ``_hooks``' hooks are ``HookOut``'s: the content and batch
        pieces routes send these dicts as they are (``contentforge_api.json_answers``).
        """
        return {
            "id": row.id,
            "batch_id": row.batch_id,
            "parent_piece_id": row.parent_piece_id,
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
            "decision": decision,  # what an AUTO or ASSISTED batch's mode chose (null in content pages)
            "image_url": self._image_url(row),
            "hooks": hooks.get(row.id, []),
            "error": row.error,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }


def _batch(batch: BatchORM | BatchHead) -> dict[str, Any]:
    return {
        "batch_id": batch.id,
        "persona_id": batch.persona_id,
        "platform": batch.platform,
        "status": effective_status(batch),
        "num_pieces": batch.num_pieces,
        "flow_run_id": batch.flow_run_id,
    }


def one_snapshot(session: Session) -> Connection:
    """The session's connection, reading one snapshot for all its statements.

    PostgreSQL's default READ COMMITTED gives each statement its own snapshot, so a page's count and its
    rows could disagree while pieces change status (a repeated or skipped item, a total that does not
    match); REPEATABLE READ makes the transaction's reads one snapshot. SQLite's read transaction
    already is one.
    """
    if session.get_bind().dialect.name == "postgresql":
        return session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    return session.connection()


def _hooks(db: Connection, statement: Select[Any], **params: Any) -> dict[str, list[dict[str, Any]]]:
    """The hooks ``statement`` (one of ``HOOKS_OF_*``) selects, per piece id as ``HookOut`` dicts,
    each piece's in (platform, position) order.

    Built straight from the rows: a page has about 250 hooks, and an intermediate ``Hook`` per row
    (for its caption) cost more than reading them (issue 18). The caption is still ``Hook.caption``'s
    own code, applied to the row, which has the same fields. Unvalidated on purpose, in ``HookOut``'s
    field order: the content and batch pieces routes send them as they are (``json_answers``).
    """
    rows = db.execute(statement, params).all()  # one fetch: iterating the result fetches row by row
    by_piece: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        piece_id, style, text, call_to_action, hashtags, platform, quality_gate = row
        hook = {
            "style": style,
            "text": text,
            "call_to_action": call_to_action,
            "hashtags": hashtags,
            "platform": platform,
            "caption": _caption(row),
            "quality_gate": quality_gate,
        }
        by_piece.setdefault(piece_id, []).append(hook)
    return by_piece


_caption = cast(Callable[[Any], str], cast(property, Hook.caption).fget)
"""``Hook.caption`` (the published text) of anything with a hook's text, call to action and hashtags."""
