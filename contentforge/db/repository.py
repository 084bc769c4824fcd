"""The one place that reads and writes ContentForge rows.

Every method runs in its own short transaction, so one ``Repository`` can be shared by the ~10
generation threads of a batch: nothing holds a session (or, on SQLite, the write lock) between
calls. Writes are idempotent where a retried Prefect task would repeat them: planning pieces,
recording a generated image and its cost, replacing hooks.

Nothing that looks like a credential is stored: JSON payloads and error texts pass through
``_redact`` first, so a careless ``params={"openai_api_key": ...}`` never reaches the database.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from contentforge.db.engine import READ_ONLY, make_session_factory
from contentforge.db.models import (
    BATCH_STATUSES,
    COST_KINDS,
    PIECE_STATUSES,
    STRATEGY_STEPS,
    BatchORM,
    CostEntryORM,
    HookORM,
    ModerationVerdictORM,
    PersonaORM,
    PieceORM,
    utcnow,
)
from contentforge.domain.models import (
    GenerationRecord,
    Hook,
    ModerationVerdict,
    Persona,
    PieceStatus,
    Platform,
    Verdict,
)
from contentforge.errors import BatchBusy, InvalidInput, InvalidPersona, UnknownPersona
from contentforge.moderation.binding import judged_hash, judged_texts
from contentforge.redaction import REDACTED as REDACTED
from contentforge.redaction import redact as _redact
from contentforge.redaction import redact_text as _redact_text

MAX_ERROR_CHARS = 10_000
"""Errors are for people; a multi-megabyte traceback would only bloat the table."""


class RecordNotFound(LookupError):
    """A piece or batch id that the database does not know: a caller bug, not bad user input."""


@dataclass(frozen=True)
class PlannedPiece:
    """A piece as the planner decided it, before any image exists."""

    piece_id: str
    index: int
    template_id: str
    template_tier: str
    prompt: str
    negative_prompt: str
    seed: int


@dataclass(frozen=True)
class PieceRow:
    """A ``pieces`` row with its hooks, detached from any session so it can cross threads."""

    id: str
    batch_id: str
    persona_id: str
    index: int
    template_id: str
    template_tier: str
    status: PieceStatus
    prompt: str
    negative_prompt: str
    seed: int
    model: str | None
    backend: str | None
    loras: list[dict[str, Any]] | None
    steps: int | None
    guidance_scale: float | None
    width: int | None
    height: int | None
    scheduler: str | None
    generation_record: dict[str, Any] | None
    generation_fingerprint: str | None
    storage_key: str | None
    url: str | None
    content_sha256: str | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    generation_seconds: float | None
    cost_usd: float | None
    verdict: Verdict | None
    tier: str | None
    moderation_scores: dict[str, float] | None
    moderation_reasons: list[str] | None
    moderated_hash: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    hooks: tuple[Hook, ...]

    @property
    def record(self) -> GenerationRecord | None:
        """The stored generation record, parsed; enough to regenerate the image exactly."""
        if self.generation_record is None:
            return None
        return GenerationRecord.model_validate(self.generation_record)


@dataclass
class BatchCost:
    """A batch's line in a ``CostReport``."""

    batch_id: str
    persona_id: str
    entries: int = 0
    usd: float = 0.0
    usd_by_kind: dict[str, float] = field(default_factory=dict)


@dataclass
class StepCost:
    """A strategy step's line in a ``CostReport``: its model calls summed over every run."""

    step: str
    entries: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0


@dataclass(frozen=True)
class CostReport:
    """The ledger summed per batch and per strategy step (``Repository.cost_report``)."""

    batches: list[BatchCost]
    steps: list[StepCost]

    @property
    def total_usd(self) -> float:
        return sum(b.usd for b in self.batches) + sum(s.usd for s in self.steps)


class Repository:
    """Short-transaction access to personas, batches, pieces, hooks, verdicts and costs."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sessions = make_session_factory(engine)
        # Reads may BEGIN deferred on SQLite and so run beside a writer instead of queueing behind it.
        self._read_sessions = make_session_factory(engine.execution_options(**{READ_ONLY: True}))

    @property
    def engine(self) -> Engine:
        """The engine, for modules with their own queries on the same database (review, publishing)."""
        return self._engine

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._read_sessions() as session, session.begin():
            yield session

    # Personas

    def upsert_persona(self, persona: Persona) -> None:
        """Insert the persona, or replace the stored one with the same id."""
        now = utcnow()
        values = {
            "id": persona.id,
            "name": persona.name,
            "niche": persona.niche,
            "data": persona.model_dump(mode="json"),
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self._write() as session:
                stmt = _insert(session, PersonaORM).values(**values)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["id"],
                    set_={
                        "name": persona.name,
                        "niche": persona.niche,
                        "data": values["data"],
                        "updated_at": now,
                    },
                )
                session.execute(stmt)
        except IntegrityError as exc:
            raise InvalidPersona(
                f"persona name {persona.name!r} is already used by another persona; rename one of them"
            ) from exc

    def get_persona(self, id_or_name: str) -> Persona | None:
        """The persona with this id, else this name (exact, then case-insensitive if unambiguous)."""
        with self._read() as session:
            row = session.get(PersonaORM, id_or_name)
            if row is None:
                row = session.scalars(select(PersonaORM).where(PersonaORM.name == id_or_name)).first()
            if row is None:
                matches = session.scalars(
                    select(PersonaORM).where(func.lower(PersonaORM.name) == id_or_name.lower()).limit(2)
                ).all()
                row = matches[0] if len(matches) == 1 else None
            return None if row is None else _to_persona(row)

    def list_personas(self) -> list[Persona]:
        with self._read() as session:
            return [_to_persona(row) for row in session.scalars(select(PersonaORM).order_by(PersonaORM.name))]

    # Batches

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
        with self._write() as session:
            if session.get(PersonaORM, persona_id) is None:
                raise UnknownPersona(f"no persona with id {persona_id!r}; save it before starting a batch")
            stmt = _insert(session, BatchORM).values(
                id=batch_id,
                persona_id=persona_id,
                platform=platform,
                num_pieces=num_pieces,
                tier_mix=dict(tier_mix),
                seed=seed,
                params=_redact(dict(params)),
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
        with self._write() as session:
            batch = _batch(session, batch_id)
            if owner is not None and batch.lease_owner != owner:
                return False
            batch.status = status
            batch.summary = _redact(dict(summary))
            batch.finished_at = utcnow()
            batch.lease_owner = batch.lease_expires_at = None
            return True

    # Batch leases: one runner per batch (``contentforge.db.leases``)

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
        that now works on it. With ``wait_s`` it waits up to that long for a live holder to finish.
        """
        import time

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
            with self._write() as session:
                _batch(session, batch_id)
                taken = session.execute(
                    update(BatchORM)
                    .where(BatchORM.id == batch_id, free)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount == 1:
                    return
                holder = session.get(BatchORM, batch_id)
                assert holder is not None
                held_by, until = holder.lease_owner, holder.lease_expires_at
            if time.monotonic() >= deadline:
                left = "" if until is None else f" (its lease runs until {until:%H:%M:%S} UTC unless renewed)"
                raise BatchBusy(
                    f"batch {batch_id} is already being run by {held_by}{left}; "
                    "wait for it to finish (or ask to wait), then run it again to resume"
                )
            time.sleep(poll_s)

    def renew_batch_lease(self, batch_id: str, owner: str, ttl_s: float) -> bool:
        """Extend ``owner``'s lease; False when another runner holds it now."""
        with self._write() as session:
            renewed = session.execute(
                update(BatchORM)
                .where(BatchORM.id == batch_id, BatchORM.lease_owner == owner)
                .values(lease_expires_at=utcnow() + timedelta(seconds=ttl_s))
                .execution_options(synchronize_session=False)
            )
            return bool(renewed.rowcount == 1)

    def release_batch_lease(self, batch_id: str, owner: str) -> bool:
        """Give the lease up if ``owner`` still holds it (the batch's status is left as it is)."""
        with self._write() as session:
            released = session.execute(
                update(BatchORM)
                .where(BatchORM.id == batch_id, BatchORM.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )
            return bool(released.rowcount == 1)

    def batch_lease(self, batch_id: str) -> tuple[str, datetime] | None:
        """``(holder, expires_at)`` of a live lease on the batch, or None when nobody runs it."""
        with self._read() as session:
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
        """
        if status not in ("crashed", "cancelled", "failed"):
            raise InvalidInput(f"a batch run ends as 'crashed', 'cancelled' or 'failed', not {status!r}")
        guard = [BatchORM.id == batch_id, BatchORM.status == "running"]
        if owner is not None:
            guard.append(BatchORM.lease_owner == owner)
        with self._write() as session:
            ended = session.execute(
                update(BatchORM)
                .where(*guard)
                .values(status=status, finished_at=utcnow(), lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )
            return bool(ended.rowcount == 1)

    def reconcile_expired_batches(self) -> list[str]:
        """Mark ``running`` batches whose runner's lease expired as ``crashed``; returns their ids.

        A runner killed with ``kill -9`` runs no hook; its lease running out is how ContentForge learns.
        """
        now = utcnow()
        expired = and_(
            BatchORM.status == "running",
            BatchORM.lease_expires_at.is_not(None),
            BatchORM.lease_expires_at < now,
        )
        with self._write() as session:
            ids = list(session.scalars(select(BatchORM.id).where(expired)))
            if ids:
                session.execute(
                    update(BatchORM)
                    .where(BatchORM.id.in_(ids), expired)
                    .values(status="crashed", finished_at=now, lease_owner=None, lease_expires_at=None)
                    .execution_options(synchronize_session=False)
                )
            return ids

    def latest_batches(self, limit: int = 10) -> list[dict[str, Any]]:
        """The newest batches first, each with its persona's name and piece counts by status."""
        with self._read() as session:
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
                {
                    "id": batch.id,
                    "persona_id": batch.persona_id,
                    "persona_name": persona_name,
                    "platform": batch.platform,
                    "num_pieces": batch.num_pieces,
                    "tier_mix": batch.tier_mix,
                    "seed": batch.seed,
                    "status": effective_status(batch),
                    "flow_run_id": batch.flow_run_id,
                    "started_at": batch.started_at,
                    "finished_at": batch.finished_at,
                    "summary": batch.summary,
                    "by_status": counts[batch.id],
                }
                for batch, persona_name in rows
            ]

    def batch_stats(self, batch_id: str) -> dict[str, Any]:
        """Counts and costs of one batch.

        ``cost_usd_total`` sums every cost entry (image, text, moderation); ``cost_usd_mean`` divides
        it by the pieces that got an image, i.e. what one usable-or-not image cost end to end.
        """
        with self._read() as session:
            batch = _batch(session, batch_id)
            in_batch = PieceORM.batch_id == batch_id

            def grouped(column: Any) -> dict[str, int]:
                query = select(column, func.count()).where(in_batch, column.is_not(None)).group_by(column)
                return {key: count for key, count in session.execute(query)}

            by_status = dict.fromkeys(PIECE_STATUSES, 0) | grouped(PieceORM.status)
            generated, seconds_mean = session.execute(
                select(func.count(PieceORM.content_sha256), func.avg(PieceORM.generation_seconds)).where(
                    in_batch
                )
            ).one()
            cost_by_kind = dict.fromkeys(COST_KINDS, 0.0) | {
                kind: float(total)
                for kind, total in session.execute(
                    select(CostEntryORM.kind, func.sum(CostEntryORM.amount_usd))
                    .where(CostEntryORM.batch_id == batch_id)
                    .group_by(CostEntryORM.kind)
                )
            }
            hooks = session.scalar(select(func.count()).select_from(HookORM).join(PieceORM).where(in_batch))
            total_cost = sum(cost_by_kind.values())
            return {
                "batch_id": batch_id,
                "status": effective_status(batch),
                "num_pieces": batch.num_pieces,
                "pieces": sum(by_status.values()),
                "by_status": by_status,
                "by_verdict": grouped(PieceORM.verdict),
                "by_tier": grouped(PieceORM.tier),
                "by_template_tier": grouped(PieceORM.template_tier),
                "generated": generated,
                "cost_usd_total": total_cost,
                "cost_usd_by_kind": cost_by_kind,
                "cost_usd_mean": total_cost / generated if generated else None,
                "generation_seconds_mean": None if seconds_mean is None else float(seconds_mean),
                "hooks": hooks,
            }

    # Pieces

    def add_planned_pieces(self, batch_id: str, pieces: Sequence[PlannedPiece]) -> None:
        """Insert the planned pieces; a (batch, index) already present is left exactly as it is."""
        if not pieces:
            return
        now = utcnow()
        with self._write() as session:
            persona_id = _batch(session, batch_id).persona_id
            stmt = _insert(session, PieceORM).values(
                [
                    {
                        "id": p.piece_id,
                        "batch_id": batch_id,
                        "persona_id": persona_id,
                        "index": p.index,
                        "template_id": p.template_id,
                        "template_tier": p.template_tier,
                        "status": PieceStatus.planned.value,
                        "prompt": p.prompt,
                        "negative_prompt": p.negative_prompt,
                        "seed": p.seed,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for p in pieces
                ]
            )
            try:
                # Only the (batch, index) conflict is expected; a piece id clash still raises.
                session.execute(stmt.on_conflict_do_nothing(index_elements=["batch_id", "index"]))
            except IntegrityError as exc:
                raise InvalidInput(
                    f"a planned piece id of batch {batch_id!r} is already used elsewhere"
                ) from exc

    def get_piece(self, piece_id: str) -> PieceRow | None:
        with self._read() as session:
            piece = session.get(PieceORM, piece_id, options=[selectinload(PieceORM.hooks)])
            return None if piece is None else _to_row(piece)

    def pieces(
        self,
        *,
        batch_id: str | None = None,
        persona_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[PieceRow]:
        """Pieces matching every given filter, oldest first and in plan order within a batch."""
        query = select(PieceORM).options(selectinload(PieceORM.hooks))
        if batch_id is not None:
            query = query.where(PieceORM.batch_id == batch_id)
        if persona_id is not None:
            query = query.where(PieceORM.persona_id == persona_id)
        if status is not None:
            query = query.where(PieceORM.status == str(status))
        query = query.order_by(PieceORM.created_at, PieceORM.batch_id, PieceORM.index).limit(limit)
        with self._read() as session:
            return [_to_row(piece) for piece in session.scalars(query)]

    def mark_generated(
        self,
        piece_id: str,
        *,
        record: GenerationRecord,
        storage_key: str,
        url: str,
        content_sha256: str,
        queued_at: datetime,
        started_at: datetime,
        finished_at: datetime,
        generation_seconds: float,
        cost_usd: float,
        generation_id: str | None = None,
    ) -> None:
        """Store the image's record and location, and the charge of the generation that made it.

        The charge is keyed (``cost_entries.charge_key``) by ``generation_id`` when given (each real
        generation is one charge, recorded by ``charge_generation`` before the image is stored, so a
        crash after generating never loses it), else by the record's fingerprint; recording the same
        generation again never adds a second charge. If it produced the very same bytes and the piece
        was already moderated, the verdict still holds and is kept; otherwise the piece goes back to
        'generated' and must be moderated again.
        """
        for name, value in (
            ("queued_at", queued_at),
            ("started_at", started_at),
            ("finished_at", finished_at),
        ):
            _require_aware(name, value)
        with self._write() as session:
            piece = _piece(session, piece_id, for_update=True)
            keep_verdict = piece.verdict is not None and piece.content_sha256 == content_sha256
            fingerprint = record.fingerprint()
            piece.prompt = record.prompt
            piece.negative_prompt = record.negative_prompt
            piece.seed = record.seed
            piece.model = record.model
            piece.backend = record.backend
            piece.loras = [lora.model_dump(mode="json") for lora in record.loras]
            piece.steps = record.steps
            piece.guidance_scale = record.guidance_scale
            piece.width = record.width
            piece.height = record.height
            piece.scheduler = record.scheduler
            piece.generation_record = _redact(record.model_dump(mode="json"))
            piece.generation_fingerprint = fingerprint
            piece.storage_key = storage_key
            piece.url = url
            piece.content_sha256 = content_sha256
            piece.queued_at, piece.started_at, piece.finished_at = queued_at, started_at, finished_at
            piece.generation_seconds = generation_seconds
            piece.cost_usd = cost_usd
            piece.error = None
            if not keep_verdict:
                piece.status = PieceStatus.generated.value
                _clear_verdict(piece)
            key = f"image:{piece_id}:{generation_id or fingerprint}"
            _charge(
                session,
                key,
                update_amount=generation_id is None,
                batch_id=piece.batch_id,
                piece_id=piece_id,
                kind="image",
                provider=record.backend,
                amount_usd=cost_usd,
                detail={"model": record.model, "fingerprint": fingerprint},
            )

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
        with self._write() as session:
            piece = _piece(session, piece_id)
            return _charge(
                session,
                f"image:{piece_id}:{generation_id}",
                batch_id=piece.batch_id,
                piece_id=piece_id,
                kind="image",
                provider=provider,
                amount_usd=amount_usd,
                detail=None if detail is None else _redact(dict(detail)),
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
        with self._write() as session:
            _batch(session, batch_id)
            values = {
                "batch_id": batch_id,
                "piece_id": piece_id,
                "kind": kind,
                "provider": provider,
                "amount_usd": amount_usd,
                "detail": None if detail is None else _redact(dict(detail)),
            }
            if charge_key is None:
                session.add(CostEntryORM(**values))
                return True
            return _charge(session, charge_key, **values)

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
        with self._write() as session:
            session.add(
                CostEntryORM(
                    step=step,
                    brand_id=brand_id,
                    persona_id=persona_id,
                    subject_id=subject_id,
                    kind=kind,
                    provider=provider,
                    amount_usd=amount_usd,
                    detail=None if detail is None else _redact(dict(detail)),
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
        with self._read() as session:
            for batch_id, batch_persona, kind, entries, usd in session.execute(batch_query):
                line = batches.setdefault(batch_id, BatchCost(batch_id=batch_id, persona_id=batch_persona))
                line.entries += int(entries)
                line.usd += float(usd or 0.0)
                line.usd_by_kind[kind] = float(usd or 0.0)
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

    def hook_platforms(self, piece_id: str) -> set[str]:
        """The platforms the piece has hooks for (a resumed batch leaves those hooks alone)."""
        with self._read() as session:
            return set(session.scalars(select(HookORM.platform).where(HookORM.piece_id == piece_id)))

    def save_hooks(self, piece_id: str, hooks: Sequence[Hook]) -> bool:
        """Replace the piece's hooks for each platform present in ``hooks``; others stay.

        Hooks are published text, so a piece whose moderated texts change goes back to ``generated``
        (its verdict no longer covers what would be published) and is moderated again; saving the
        very same hooks changes nothing. Returns whether the piece lost its verdict.
        """
        if not hooks:
            return False
        platforms = sorted({hook.platform.value for hook in hooks})
        with self._write() as session:
            piece = _piece(session, piece_id, for_update=True)
            session.refresh(piece, attribute_names=["hooks"])
            before = content_hash_of(piece)
            session.execute(
                delete(HookORM).where(HookORM.piece_id == piece_id, HookORM.platform.in_(platforms))
            )
            positions: dict[str, int] = {}
            for hook in hooks:
                position = positions.get(hook.platform.value, 0)
                positions[hook.platform.value] = position + 1
                session.add(
                    HookORM(
                        piece_id=piece_id,
                        position=position,
                        style=hook.style.value,
                        platform=hook.platform.value,
                        text=hook.text,
                        call_to_action=hook.call_to_action,
                        hashtags=list(hook.hashtags),
                    )
                )
            session.flush()
            session.refresh(piece, attribute_names=["hooks"])
            if piece.moderated_hash is not None and content_hash_of(piece) != before:
                piece.status = PieceStatus.generated.value
                _clear_verdict(piece)
                return True
            return False

    def content_hash(self, piece_id: str) -> str:
        """The hash of the piece's current image and texts (``moderation.binding``)."""
        with self._read() as session:
            return content_hash_of(_piece(session, piece_id))

    def save_verdict(
        self,
        piece_id: str,
        verdict: ModerationVerdict,
        *,
        judged: str | None = None,
        review_reasons: Sequence[str] = (),
    ) -> bool:
        """Keep the verdict's history row and apply it: 'ready', or 'rejected' with its reasons.

        Rejected pieces stay in the database so a reviewer can see what was refused and why. ``tier``
        is the publishing tier, so it is empty for a rejected piece. ``review_reasons`` (a borderline or
        disputed verdict) put a not-rejected piece in ``needs_review`` in the same transaction, so it
        is never ``ready`` even for a moment.

        ``judged`` is ``moderation.binding.judged_hash`` of what the moderator actually saw. When the
        piece changed while it was being judged (its current hash differs), the verdict is kept in the
        history only and the piece stays ``generated`` for another pass; returns False then. Without
        ``judged`` the verdict is bound to the piece's current content (for callers that judged the
        stored piece in this very state, such as tests).
        """
        with self._write() as session:
            piece = _piece(session, piece_id, for_update=True)
            if piece.status not in (PieceStatus.generated, PieceStatus.ready, PieceStatus.rejected):
                raise InvalidInput(
                    f"piece {piece_id!r} is {piece.status!r}; only a generated image is moderated"
                )
            current = content_hash_of(piece)
            scores = {name: float(score) for name, score in verdict.scores.items()}
            session.add(
                ModerationVerdictORM(
                    piece_id=piece_id,
                    verdict=verdict.verdict.value,
                    scores=scores,
                    reasons=list(verdict.reasons),
                    backends=list(verdict.backends),
                )
            )
            if judged is not None and judged != current:
                piece.status = PieceStatus.generated.value
                _clear_verdict(piece)
                return False
            piece.moderated_hash = current
            rejected = verdict.verdict == Verdict.rejected
            piece.verdict = verdict.verdict.value
            piece.tier = None if rejected else verdict.verdict.value
            piece.moderation_scores = scores
            piece.moderation_reasons = list(verdict.reasons)
            piece.status = (PieceStatus.rejected if rejected else PieceStatus.ready).value
            if review_reasons and not rejected:
                piece.status = PieceStatus.needs_review.value
                held = [f"needs review: {reason}" for reason in review_reasons]
                piece.moderation_reasons = held + list(verdict.reasons)
            return True

    def mark_failed(self, piece_id: str, error: str) -> None:
        """Record why a piece failed; its plan stays so the batch report can show the gap."""
        with self._write() as session:
            piece = _piece(session, piece_id, for_update=True)
            piece.status = PieceStatus.failed.value
            piece.error = _redact_text(error)[:MAX_ERROR_CHARS]
            piece.finished_at = piece.finished_at or utcnow()


def _insert(session: Session, entity: type[Any]) -> Any:
    """An INSERT that supports ON CONFLICT: both backends have it, with the same SQLAlchemy API."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(entity)
    if dialect == "sqlite":
        return sqlite.insert(entity)
    raise NotImplementedError(f"ContentForge supports SQLite and PostgreSQL, not {dialect}")


def effective_status(batch: BatchORM) -> str:
    """``crashed`` for a ``running`` batch whose runner's lease ran out (it died without a word)."""
    expired = batch.lease_expires_at is not None and batch.lease_expires_at < utcnow()
    return "crashed" if batch.status == "running" and expired else batch.status


def _clear_verdict(piece: PieceORM) -> None:
    piece.verdict = piece.tier = piece.moderation_scores = piece.moderation_reasons = None
    piece.moderated_hash = None


def _hooks_of(piece: PieceORM) -> list[Hook]:
    return [
        Hook(
            style=h.style,
            text=h.text,
            call_to_action=h.call_to_action,
            hashtags=list(h.hashtags),
            platform=h.platform,
        )
        for h in piece.hooks
    ]


def content_hash_of(piece: PieceORM) -> str:
    """``judged_hash`` of the piece as stored now: its image's sha256, its prompt and every hook caption."""
    return judged_hash(piece.content_sha256, judged_texts(piece.prompt, _hooks_of(piece)))


def _charge(session: Session, charge_key: str, *, update_amount: bool = False, **values: Any) -> bool:
    """Insert the cost entry keyed ``charge_key`` unless it exists; True when this call added it.

    ``update_amount`` replaces an existing entry's amount and detail instead (a legacy key that names
    the record rather than one generation).
    """
    stmt = _insert(session, CostEntryORM).values(charge_key=charge_key, **values)
    if update_amount:
        stmt = stmt.on_conflict_do_update(
            index_elements=["charge_key"],
            set_={"amount_usd": values["amount_usd"], "detail": values.get("detail")},
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=["charge_key"])
    # RETURNING rather than rowcount: psycopg reports no rowcount for an ORM-enabled INSERT.
    return session.execute(stmt.returning(CostEntryORM.id)).scalar() is not None


def _batch(session: Session, batch_id: str) -> BatchORM:
    batch = session.get(BatchORM, batch_id)
    if batch is None:
        raise RecordNotFound(f"no batch with id {batch_id!r}")
    return batch


def _piece(session: Session, piece_id: str, *, for_update: bool = False) -> PieceORM:
    # FOR UPDATE serialises concurrent writers of one piece on PostgreSQL; SQLite's BEGIN IMMEDIATE
    # already does, and its compiler omits the clause.
    piece = session.get(PieceORM, piece_id, with_for_update=for_update)
    if piece is None:
        raise RecordNotFound(f"no piece with id {piece_id!r}")
    return piece


def _to_persona(row: PersonaORM) -> Persona:
    try:
        return Persona.model_validate(row.data)
    except ValidationError as exc:
        raise InvalidPersona(f"stored persona {row.id!r} no longer validates: {exc}") from exc


_ROW_COLUMNS = tuple(f.name for f in fields(PieceRow) if f.name != "hooks")


def _to_row(piece: PieceORM) -> PieceRow:
    values = {name: getattr(piece, name) for name in _ROW_COLUMNS}
    values["status"] = PieceStatus(piece.status)
    values["verdict"] = None if piece.verdict is None else Verdict(piece.verdict)
    return PieceRow(**values, hooks=tuple(_hooks_of(piece)))


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be timezone-aware (e.g. datetime.now(UTC)), got {value.isoformat()}")


# Redaction (REDACTED, _redact, _redact_text) lives in contentforge.redaction, imported above.
