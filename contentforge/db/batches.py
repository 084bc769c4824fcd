"""Batches: their start and end, one runner per batch (leases), listings and statistics.

Batch leases (``contentforge.db.leases`` says why a lease and not a lock): taking one is a single
guarded ``UPDATE … WHERE the lease is free, expired or already ours``, so of two runners racing,
exactly one sees its row updated, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from contentforge.db.models import (
    BATCH_STATUSES,
    COST_KINDS,
    PIECE_STATUSES,
    BatchCostTotalORM,
    BatchORM,
    HookORM,
    PersonaORM,
    PieceORM,
    utcnow,
)
from contentforge.db.rows import BatchStats, BatchSummary
from contentforge.db.sessions import RecordNotFound, Store, insert_for, load_batch, rows_changed
from contentforge.domain.models import Platform
from contentforge.errors import BatchBusy, InvalidInput, UnknownPersona
from contentforge.redaction import redact


class BatchRepository(Store):
    def create_batch(
        self,
        *,
        batch_id: str,
        persona_id: str,
        platform: str,
        num_pieces: int,
        tier_mix: Mapping[str, float],
        seed: int,
        params: Mapping[str, Any],
        flow_run_id: str | None,
    ) -> None:
        """Record a started batch; repeating the call (a retried flow) leaves the first record alone."""
        try:
            platform = Platform(platform).value
        except ValueError as exc:
            raise InvalidInput(
                f"unknown platform {platform!r}; use one of {[p.value for p in Platform]}"
            ) from exc
        with self._db.write() as session:
            if session.get(PersonaORM, persona_id) is None:
                raise UnknownPersona(f"no persona with id {persona_id!r}; save it before starting a batch")
            stmt = insert_for(session, BatchORM).values(
                id=batch_id,
                persona_id=persona_id,
                platform=platform,
                num_pieces=num_pieces,
                tier_mix=dict(tier_mix),
                seed=seed,
                params=redact(dict(params)),
                status="running",
                flow_run_id=flow_run_id,
                started_at=utcnow(),
            )
            session.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))
            existing = session.get(BatchORM, batch_id)
            if existing is not None and existing.persona_id != persona_id:
                raise InvalidInput(f"batch {batch_id!r} already exists for persona {existing.persona_id!r}")

    def finish_batch(
        self, batch_id: str, *, status: str, summary: Mapping[str, Any], owner: str | None = None
    ) -> bool:
        """Record the batch's end and release its lease; with ``owner``, only while that runner holds it.

        Returns False (and writes nothing) when ``owner`` lost the lease to another runner, so a stalled
        runner never writes its summary over the one that took the batch over.
        """
        if status not in BATCH_STATUSES or status == "running":
            raise InvalidInput(f"a batch finishes as 'completed' or 'failed', not {status!r}")
        with self._db.write() as session:
            # FOR UPDATE: on PostgreSQL a takeover committed between this read and the write would
            # otherwise be overwritten (SQLite's BEGIN IMMEDIATE already serialises the two).
            batch = load_batch(session, batch_id, for_update=True)
            if owner is not None and batch.lease_owner != owner:
                return False
            batch.status = status
            batch.summary = redact(dict(summary))
            batch.finished_at = utcnow()
            batch.lease_owner = batch.lease_expires_at = None
            if status in UNFINISHED_END_STATUSES:
                end_unfinished_pieces(session, [batch_id], status)
            return True

    # Leases: one runner per batch (``contentforge.db.leases``)

    def acquire_batch_lease(
        self,
        batch_id: str,
        owner: str,
        *,
        ttl_s: float,
        flow_run_id: str | None = None,
        wait_s: float = 0.0,
        poll_s: float = 1.0,
    ) -> None:
        """Take the batch's lease for ``owner`` (free, expired, or already ours), or raise ``BatchBusy``.

        Taking it marks the batch ``running`` again (a resume) and records ``flow_run_id`` as the run
        that now works on it; in the same transaction the pieces an earlier run left ``cancelled`` or
        ``crashed`` go back to ``planned``, so every step that picks a batch's unfinished pieces by
        ``planned`` makes them. With ``wait_s`` it waits up to that long for a live holder to finish.
        """
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            now = utcnow()
            free = or_(
                BatchORM.lease_owner.is_(None),
                BatchORM.lease_expires_at < now,
                BatchORM.lease_owner == owner,
            )
            values: dict[str, Any] = {
                "lease_owner": owner,
                "lease_expires_at": now + timedelta(seconds=ttl_s),
                "status": "running",
                "finished_at": None,
            }
            if flow_run_id is not None:
                values["flow_run_id"] = flow_run_id
            with self._db.write() as session:
                load_batch(session, batch_id)
                taken = session.execute(
                    update(BatchORM)
                    .where(BatchORM.id == batch_id, free)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if rows_changed(taken) == 1:
                    session.execute(
                        update(PieceORM)
                        .where(PieceORM.batch_id == batch_id, PieceORM.status.in_(UNFINISHED_END_STATUSES))
                        .values(status=PLANNED, updated_at=now)
                        .execution_options(synchronize_session=False)
                    )
                    return
                holder = session.get(BatchORM, batch_id)
                assert holder is not None
                held_by, until = holder.lease_owner, holder.lease_expires_at
            if time.monotonic() >= deadline:
                raise BatchBusy.held(batch_id, held_by, until)
            time.sleep(poll_s)

    def renew_batch_lease(self, batch_id: str, owner: str, ttl_s: float) -> bool:
        """Extend ``owner``'s lease; False when another runner holds it now."""
        with self._db.write() as session:
            renewed = session.execute(
                update(BatchORM)
                .where(BatchORM.id == batch_id, BatchORM.lease_owner == owner)
                .values(lease_expires_at=utcnow() + timedelta(seconds=ttl_s))
                .execution_options(synchronize_session=False)
            )
            return bool(rows_changed(renewed) == 1)

    def release_batch_lease(self, batch_id: str, owner: str) -> bool:
        """Give the lease up if ``owner`` still holds it (the batch's status is left as it is)."""
        with self._db.write() as session:
            released = session.execute(
                update(BatchORM)
                .where(BatchORM.id == batch_id, BatchORM.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )
            return bool(rows_changed(released) == 1)

    def batch_lease(self, batch_id: str) -> tuple[str, datetime] | None:
        """``(holder, expires_at)`` of a live lease on the batch, or None when nobody runs it."""
        with self._db.read() as session:
            batch = session.get(BatchORM, batch_id)
            if batch is None or batch.lease_owner is None or batch.lease_expires_at is None:
                return None
            if batch.lease_expires_at < utcnow():
                return None
            return batch.lease_owner, batch.lease_expires_at

    def end_batch_run(self, batch_id: str, status: str, owner: str | None = None) -> bool:
        """Mark a ``running`` batch ``crashed``, ``cancelled`` or ``failed`` and release its lease.

        Called by Prefect state hooks of the run that held it; with ``owner``, only if that run still
        holds the lease (a resume that took over is left alone). Returns whether anything changed.
        Ending ``crashed`` or ``cancelled`` gives the batch's still ``planned`` pieces that status in
        the same transaction (finished ones keep theirs); a ``failed`` run leaves them ``planned``.
        """
        if status not in ("crashed", "cancelled", "failed"):
            raise InvalidInput(f"a batch run ends as 'crashed', 'cancelled' or 'failed', not {status!r}")
        guard = [BatchORM.id == batch_id, BatchORM.status == "running"]
        if owner is not None:
            guard.append(BatchORM.lease_owner == owner)
        with self._db.write() as session:
            ended = session.execute(
                update(BatchORM)
                .where(*guard)
                .values(status=status, finished_at=utcnow(), lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )
            if rows_changed(ended) != 1:
                return False
            if status in UNFINISHED_END_STATUSES:
                end_unfinished_pieces(session, [batch_id], status)
            return True

    def reconcile_expired_batches(self, batch_id: str | None = None) -> list[str]:
        """Mark ``running`` batches whose runner's lease expired as ``crashed``; returns their ids.

        A runner killed with ``kill -9`` runs no hook; its lease running out is how ContentForge learns.
        With ``batch_id``, only that batch: a hook reconciles its own batch, never another one whose
        live runner is merely late renewing. Their still ``planned`` pieces become ``crashed`` too.
        """
        now = utcnow()
        expired = and_(
            BatchORM.status == "running",
            BatchORM.lease_expires_at.is_not(None),
            BatchORM.lease_expires_at < now,
        )
        if batch_id is not None:
            expired = and_(expired, BatchORM.id == batch_id)
        with self._db.write() as session:
            # RETURNING: only the batches this statement marked, not a batch a resume took over
            # between a read and the write (its pieces must stay planned for the resume).
            ids = sorted(
                session.scalars(
                    update(BatchORM)
                    .where(expired)
                    .values(status="crashed", finished_at=now, lease_owner=None, lease_expires_at=None)
                    .returning(BatchORM.id)
                    .execution_options(synchronize_session=False)
                )
            )
            if ids:
                end_unfinished_pieces(session, ids, "crashed")
            return ids

    def latest_batches(self, limit: int = 10) -> list[BatchSummary]:
        """The newest batches first, each with its persona's name and piece counts by status."""
        with self._db.read() as session:
            rows = session.execute(
                select(BatchORM, PersonaORM.name)
                .join(PersonaORM, PersonaORM.id == BatchORM.persona_id)
                .order_by(BatchORM.started_at.desc(), BatchORM.id.desc())
                .limit(limit)
            ).all()
            ids = [batch.id for batch, _ in rows]
            counts: dict[str, dict[str, int]] = {i: dict.fromkeys(PIECE_STATUSES, 0) for i in ids}
            for batch_id, status, count in session.execute(
                select(PieceORM.batch_id, PieceORM.status, func.count())
                .where(PieceORM.batch_id.in_(ids))
                .group_by(PieceORM.batch_id, PieceORM.status)
            ):
                counts[batch_id][status] = count
            return [
                BatchSummary(
                    id=batch.id,
                    persona_id=batch.persona_id,
                    persona_name=persona_name,
                    platform=batch.platform,
                    num_pieces=batch.num_pieces,
                    tier_mix=batch.tier_mix,
                    seed=batch.seed,
                    status=effective_status(batch),
                    flow_run_id=batch.flow_run_id,
                    started_at=batch.started_at,
                    finished_at=batch.finished_at,
                    summary=batch.summary,
                    by_status=counts[batch.id],
                )
                for batch, persona_name in rows
            ]

    def batch_stats(self, batch_id: str) -> BatchStats:
        """Counts and costs of one batch (see ``BatchStats``); ``RecordNotFound`` for an unknown id."""
        with self._db.read() as session:
            found = load_batch_with_stats(session, batch_id)
            if found is None:
                raise RecordNotFound(f"no batch with id {batch_id!r}")
            return found[1]

    def persona_of_batch(self, batch_id: str) -> str | None:
        """The persona id of the batch, or None when no batch has this id (yet)."""
        with self._db.read() as session:
            batch = session.get(BatchORM, batch_id)
            return None if batch is None else batch.persona_id

    def platform_of_batch(self, batch_id: str) -> str | None:
        """The platform the batch was planned for, or None when no batch has this id (yet)."""
        with self._db.read() as session:
            batch = session.get(BatchORM, batch_id)
            return None if batch is None else batch.platform

    def flow_run_of_batch(self, batch_id: str) -> str | None:
        """The flow run that last took the batch (its runner of record), or None."""
        with self._db.read() as session:
            batch = session.get(BatchORM, batch_id)
            return None if batch is None else batch.flow_run_id


PLANNED = "planned"
UNFINISHED_END_STATUSES: tuple[str, ...] = ("cancelled", "crashed")
"""A batch's end statuses that its unfinished (``planned``) pieces take on with it."""


def end_unfinished_pieces(session: Session, batch_ids: Sequence[str], status: str) -> None:
    """Give the batches' ``planned`` pieces ``status`` in the caller's transaction; others keep theirs.

    A piece whose generation was already under way when the run stopped may still be stored a moment
    later; storing it (``mark_generated``) makes it ``generated`` from any status, so nothing made is
    lost, and a resume of the batch makes the rest.
    """
    assert status in UNFINISHED_END_STATUSES, status
    session.execute(
        update(PieceORM)
        .where(PieceORM.batch_id.in_(list(batch_ids)), PieceORM.status == PLANNED)
        .values(status=status, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class BatchHead:
    """A batch's own columns as the read paths show them: read as columns, since loading an ORM
    instance for one row cost more than the rest of a batch's read (issue 18)."""

    id: str
    persona_id: str
    platform: str
    status: str
    lease_expires_at: datetime | None
    num_pieces: int
    flow_run_id: str | None
    params: dict[str, Any] | None


def effective_status(batch: BatchORM | BatchHead) -> str:
    """``crashed`` for a ``running`` batch whose runner's lease ran out (it died without a word)."""
    expired = batch.lease_expires_at is not None and batch.lease_expires_at < utcnow()
    return "crashed" if batch.status == "running" and expired else batch.status


class PieceGroups:
    """A grouped count of pieces, added up per column: one scan answers every per-column count.

    Each row of the scan is one combination of the grouped columns with its counts; the per-column
    figures are sums over the rows, so ``by(column)`` equals ``GROUP BY column`` run on its own (rows
    where the column is NULL left out), and the mean is the sum of seconds over their count.
    """

    def __init__(self, columns: tuple[str, ...], rows: Sequence[Any]) -> None:
        self._columns = columns
        self._rows = rows

    def by(self, column: str) -> dict[str, int]:
        at = self._columns.index(column)
        counts: dict[str, int] = {}
        for row in self._rows:
            key = row[at]
            if key is not None:
                counts[str(key)] = counts.get(str(key), 0) + int(row.pieces)
        return dict(sorted(counts.items()))

    @property
    def pieces(self) -> int:
        return sum(int(row.pieces) for row in self._rows)

    @property
    def generated(self) -> int:
        return sum(int(row.generated) for row in self._rows)

    @property
    def generation_seconds_mean(self) -> float | None:
        timed = sum(int(row.timed) for row in self._rows)
        if not timed:
            return None
        return math.fsum(float(row.seconds) for row in self._rows if row.seconds is not None) / timed


class GroupedPieces:
    """A grouped count of pieces (``PieceGroups``), its statement built once: the pieces matching
    ``where`` (with bind parameters) counted per combination of ``columns`` (piece columns or joined).

    One statement instead of one ``GROUP BY`` per column: a read endpoint's latency is mostly its
    round trips to the database (issue 18); and built once, as building a statement per request was a
    large share of a read's CPU.
    """

    def __init__(self, where: Any, *columns: Any) -> None:
        query = select(
            *columns,
            func.count().label("pieces"),
            func.count(PieceORM.content_sha256).label("generated"),
            func.sum(PieceORM.generation_seconds).label("seconds"),
            func.count(PieceORM.generation_seconds).label("timed"),
        ).select_from(PieceORM)
        if any(column.class_ is BatchORM for column in columns):
            query = query.join(BatchORM, BatchORM.id == PieceORM.batch_id)
        self._statement = query.where(where).group_by(*columns)
        self._columns = tuple(column.key for column in columns)

    def read(self, session: Session, **params: Any) -> PieceGroups:
        # On the session's connection: a column statement needs none of the ORM's steps.
        return PieceGroups(self._columns, session.connection().execute(self._statement, params).all())


_BATCH_PIECE_GROUPS = GroupedPieces(
    PieceORM.batch_id == bindparam("batch_id"),
    PieceORM.status,
    PieceORM.verdict,
    PieceORM.tier,
    PieceORM.template_tier,
)
_BATCH_WITH_TOTALS = select(
    *(getattr(BatchORM, head.name) for head in fields(BatchHead)),  # BatchHead's fields, in its order
    select(func.count())  # its hooks
    .select_from(HookORM)
    .join(PieceORM)
    .where(PieceORM.batch_id == bindparam("batch_id"))
    .scalar_subquery(),
    *(  # kept per (batch, kind) by the database (migration 0022), not summed per read
        select(BatchCostTotalORM.amount_usd)
        .where(BatchCostTotalORM.batch_id == bindparam("batch_id"), BatchCostTotalORM.kind == kind)
        .scalar_subquery()
        for kind in COST_KINDS
    ),
).where(BatchORM.id == bindparam("batch_id"))
"""The batch's ``BatchHead`` columns with its hook count and its cost per kind of ``COST_KINDS``, as
scalar subqueries."""
_HEAD_COLUMNS = len(fields(BatchHead))


def load_batch_with_stats(session: Session, batch_id: str) -> tuple[BatchHead, BatchStats] | None:
    """The batch and its ``BatchStats`` in the caller's read transaction, or None: two statements.

    The batch row carries its costs per kind and its hook count as scalar subqueries; the pieces are
    counted in one grouped scan (``GroupedPieces``). Both on the session's connection: column
    statements need none of the ORM's steps.
    """
    db = session.connection()
    row = db.execute(_BATCH_WITH_TOTALS, {"batch_id": batch_id}).first()
    if row is None:
        return None
    batch, hooks = BatchHead(*row[:_HEAD_COLUMNS]), row[_HEAD_COLUMNS]
    cost_by_kind = {
        kind: 0.0 if total is None else float(total)
        for kind, total in zip(COST_KINDS, row[_HEAD_COLUMNS + 1 :], strict=True)
    }
    groups = _BATCH_PIECE_GROUPS.read(session, batch_id=batch_id)
    generated = groups.generated
    total_cost = sum(cost_by_kind.values())
    return batch, BatchStats(
        batch_id=batch.id,
        status=effective_status(batch),
        num_pieces=batch.num_pieces,
        pieces=groups.pieces,
        by_status=dict.fromkeys(PIECE_STATUSES, 0) | groups.by("status"),
        by_verdict=groups.by("verdict"),
        by_tier=groups.by("tier"),
        by_template_tier=groups.by("template_tier"),
        generated=generated,
        cost_usd_total=total_cost,
        cost_usd_by_kind=cost_by_kind,
        cost_usd_mean=total_cost / generated if generated else None,
        generation_seconds_mean=groups.generation_seconds_mean,
        hooks=hooks or 0,
    )
