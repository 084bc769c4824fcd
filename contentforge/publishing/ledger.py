"""The exactly-once publishing ledger on the ``publications`` table (SQLite and PostgreSQL).

State machine of one row (one piece on one platform)::

    scheduled ──claim──► publishing ──► published
        ▲                   │  │
        └── rate limited ───┘  └──► failed (permanent error, or too many attempts)

* ``schedule`` only accepts pieces that are ``ready`` and whose verdict the platform accepts;
  anything else is refused with a reason (and counted by ``schedule_many``).
* ``claim_due`` moves due rows to ``publishing`` with a guarded ``UPDATE … WHERE status =
  'scheduled'``: of two workers racing for a row, exactly one sees ``rowcount == 1``. Rows stuck in
  ``publishing`` longer than ``stale_after_s`` (a worker died) are reclaimed the same way.
* ``record_container`` stores the platform's intermediate id *before* the final publish call, so
  a reclaimed row resumes with it and never creates a second container or post.
* Just before a claim, the piece is checked again: a piece rejected after it was scheduled fails
  its publications instead of being posted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contentforge.db.engine import READ_ONLY, make_session_factory
from contentforge.db.models import HookORM, PersonaORM, PieceORM, PublicationORM, utcnow
from contentforge.db.repository import _redact_text
from contentforge.domain.models import Persona, PieceStatus, Platform, Verdict
from contentforge.errors import InvalidInput
from contentforge.moderation.policy import ModerationPolicy
from contentforge.publishing.protocol import Publication, PublishedPost

MAX_ERROR_CHARS = 2000


def idempotency_key(piece_id: str, platform: str) -> str:
    """The deterministic key of one piece on one platform (the same on every machine and rerun)."""
    digest = hashlib.sha256(f"contentforge-publication:{piece_id}:{platform}".encode()).hexdigest()
    return f"cf-{digest[:40]}"


class PublishRefused(InvalidInput):
    """A piece may not be scheduled on a platform; the message says why."""


@dataclass(frozen=True)
class PublicationRow:
    """A ``publications`` row, detached from its session."""

    id: int
    piece_id: str
    platform: str
    publisher: str
    idempotency_key: str
    status: str
    scheduled_for: datetime | None
    caption: str
    media_url: str | None
    platform_container_id: str | None
    platform_post_id: str | None
    post_url: str | None
    attempts: int
    last_error: str | None
    detail: dict[str, Any] | None
    published_at: datetime | None
    updated_at: datetime


@dataclass
class ScheduleResult:
    scheduled: list[int] = field(default_factory=list)
    existing: list[int] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    """``(piece_id, platform, reason)`` for each refusal."""

    @property
    def refused_count(self) -> int:
        return len(self.refused)


CaptionWriter = Callable[[PieceORM, Persona, Platform], tuple[str, str] | None]
"""Writes ``(caption, alt_text)`` for a piece that has no stored hook for the platform."""


class PublicationLedger:
    """Short transactions over ``publications``; safe to share between threads and processes."""

    def __init__(
        self,
        engine: Engine,
        policy: ModerationPolicy,
        *,
        caption_writer: CaptionWriter | None = None,
        caption_label: Callable[[str, str], str] | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.caption_writer = caption_writer
        self.caption_label = caption_label
        """``(platform, caption) -> caption`` adding the AI disclosure label (``moderation.disclosure``)."""
        self._sessions = make_session_factory(engine)
        self._read_sessions = make_session_factory(engine.execution_options(**{READ_ONLY: True}))

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._read_sessions() as session, session.begin():
            yield session

    # --- eligibility and scheduling ------------------------------------------------------------

    def refusal(self, piece: PieceORM | None, platform: str) -> str | None:
        """Why ``piece`` may not go to ``platform`` now; ``None`` when it may."""
        if piece is None:
            return "unknown piece"
        try:
            target = Platform(platform)
        except ValueError:
            return f"unknown platform {platform!r}; use one of {[p.value for p in Platform]}"
        if piece.status != PieceStatus.ready.value:
            return f"piece is {piece.status!r}; only 'ready' pieces are published"
        if piece.verdict is None:
            return "piece has no moderation verdict"
        if not self.policy.platform_accepts(Verdict(piece.verdict), target):
            return f"verdict {piece.verdict!r} is not accepted on {target.value}"
        if not (piece.storage_key or piece.url):
            return "piece has no stored image"
        return None

    def schedule(
        self, piece_id: str, platform: str, when: datetime, *, publisher: str, caption: str | None = None
    ) -> tuple[int, bool]:
        """Schedule ``piece_id`` on ``platform`` at ``when``; ``(publication id, created)``.

        Scheduling the same piece and platform again returns the existing publication unchanged.
        Raises ``PublishRefused`` when the piece may not be published there.
        """
        if when.tzinfo is None or when.utcoffset() is None:
            raise InvalidInput(f"scheduled time must be timezone-aware, got {when.isoformat()}")
        platform = platform.strip().lower()
        with self._write() as session:
            existing = session.scalars(
                select(PublicationORM).where(
                    PublicationORM.piece_id == piece_id, PublicationORM.platform == platform
                )
            ).first()
            if existing is not None:
                return existing.id, False
            piece = session.get(PieceORM, piece_id)
            reason = self.refusal(piece, platform)
            if reason is not None:
                raise PublishRefused(f"piece {piece_id} on {platform}: {reason}")
            assert piece is not None
            text, alt_text = self._caption(session, piece, Platform(platform), caption)
            if self.caption_label is not None:
                text = self.caption_label(platform, text)
            row = PublicationORM(
                piece_id=piece_id,
                platform=platform,
                publisher=publisher,
                idempotency_key=idempotency_key(piece_id, platform),
                status="scheduled",
                scheduled_for=when.astimezone(UTC),
                caption=text,
                media_url=piece.url,
                attempts=0,
                detail={"alt_text": alt_text, "persona_id": piece.persona_id},
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                # Another scheduler inserted the same (piece, platform) in between: theirs stands.
                raise PublishRefused(f"piece {piece_id} on {platform}: scheduled concurrently") from None
            return row.id, True

    def schedule_many(
        self, items: Iterable[tuple[str, str, datetime]], *, publisher_for: Callable[[str], str]
    ) -> ScheduleResult:
        """Schedule ``(piece_id, platform, when)`` items; refusals are collected, not raised."""
        result = ScheduleResult()
        for piece_id, platform, when in items:
            try:
                publication_id, created = self.schedule(
                    piece_id, platform, when, publisher=publisher_for(platform)
                )
            except PublishRefused as exc:
                result.refused.append((piece_id, platform, str(exc)))
                continue
            (result.scheduled if created else result.existing).append(publication_id)
        return result

    def _caption(
        self, session: Session, piece: PieceORM, platform: Platform, caption: str | None
    ) -> tuple[str, str]:
        persona_row = session.get(PersonaORM, piece.persona_id)
        persona = Persona.model_validate(persona_row.data) if persona_row is not None else None
        alt_text = f"AI-generated image by {persona.name}" if persona else "AI-generated image"
        if caption is not None:
            return caption, alt_text
        hook = session.scalars(
            select(HookORM)
            .where(HookORM.piece_id == piece.id, HookORM.platform == platform.value)
            .order_by(HookORM.position)
        ).first()
        if hook is not None:
            tags = " ".join(f"#{t}" for t in hook.hashtags)
            return "\n\n".join(p for p in (hook.text, hook.call_to_action, tags) if p), alt_text
        if self.caption_writer is not None and persona is not None:
            written = self.caption_writer(piece, persona, platform)
            if written is not None:
                return written
        raise PublishRefused(f"piece {piece.id} on {platform.value}: no caption (no hook for this platform)")

    # --- claiming ------------------------------------------------------------------------------

    def claim_due(
        self, *, limit: int = 10, now: datetime | None = None, stale_after_s: float = 900.0
    ) -> list[Publication]:
        """Claim up to ``limit`` due publications for this worker (status → ``publishing``).

        Due means ``scheduled`` with ``scheduled_for <= now``, or ``publishing`` untouched for
        ``stale_after_s`` (its worker died; it resumes with its stored container id). Each claim
        is a guarded UPDATE, so concurrent claimers never get the same row.
        """
        now = now or utcnow()
        cutoff = now - timedelta(seconds=stale_after_s)
        due = or_(
            and_(PublicationORM.status == "scheduled", PublicationORM.scheduled_for <= now),
            and_(PublicationORM.status == "publishing", PublicationORM.updated_at < cutoff),
        )
        with self._read() as session:
            candidates = session.execute(
                select(PublicationORM.id, PublicationORM.status)
                .where(due)
                .order_by(PublicationORM.scheduled_for, PublicationORM.id)
                .limit(limit * 3)
            ).all()
        claimed: list[Publication] = []
        for publication_id, status in candidates:
            if len(claimed) >= limit:
                break
            publication = self._claim_one(publication_id, status, now, cutoff)
            if publication is not None:
                claimed.append(publication)
        return claimed

    def _claim_one(
        self, publication_id: int, status: str, now: datetime, cutoff: datetime
    ) -> Publication | None:
        guard = PublicationORM.status == status
        if status == "publishing":
            guard = and_(guard, PublicationORM.updated_at < cutoff)
        else:
            guard = and_(guard, PublicationORM.scheduled_for <= now)
        with self._write() as session:
            result = session.execute(
                update(PublicationORM)
                .where(PublicationORM.id == publication_id, guard)
                .values(status="publishing", attempts=PublicationORM.attempts + 1, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return None  # another worker got it first
            row = session.get(PublicationORM, publication_id)
            assert row is not None
            piece = session.get(PieceORM, row.piece_id)
            reason = self.refusal(piece, row.platform)
            if reason is not None:
                row.status = "failed"
                row.last_error = f"not published: {reason}"
                return None
            return _to_publication(row, piece)

    # --- outcomes ------------------------------------------------------------------------------

    def record_container(self, publication_id: int, container_id: str) -> None:
        """Store the platform's intermediate id; must happen before the final publish call."""
        with self._write() as session:
            row = _row(session, publication_id)
            if row.platform_container_id and row.platform_container_id != container_id:
                raise InvalidInput(
                    f"publication {publication_id} already has container {row.platform_container_id}"
                )
            row.platform_container_id = container_id
            row.updated_at = utcnow()

    def touch(self, publication_id: int) -> None:
        """Keep a long-running publish from looking stale to other workers."""
        with self._write() as session:
            _row(session, publication_id).updated_at = utcnow()

    def mark_published(self, publication_id: int, post: PublishedPost) -> PublicationRow:
        with self._write() as session:
            row = _row(session, publication_id)
            row.status = "published"
            row.platform_post_id = post.post_id
            row.post_url = post.url
            row.published_at = utcnow()
            row.last_error = None
            row.detail = {**(row.detail or {}), **{k: v for k, v in post.detail.items() if v is not None}}
            return _to_row(row)

    def mark_failed(self, publication_id: int, error: str) -> PublicationRow:
        with self._write() as session:
            row = _row(session, publication_id)
            row.status = "failed"
            row.last_error = _redact_text(error)[:MAX_ERROR_CHARS]
            return _to_row(row)

    def reschedule(self, publication_id: int, at: datetime, error: str) -> PublicationRow:
        """Back to ``scheduled`` at ``at`` (rate limit, quota, or a transient error to retry later)."""
        with self._write() as session:
            row = _row(session, publication_id)
            row.status = "scheduled"
            row.scheduled_for = at.astimezone(UTC)
            row.last_error = _redact_text(error)[:MAX_ERROR_CHARS]
            return _to_row(row)

    def note_error(self, publication_id: int, error: str) -> None:
        with self._write() as session:
            row = _row(session, publication_id)
            row.last_error = _redact_text(error)[:MAX_ERROR_CHARS]
            row.updated_at = utcnow()

    # --- reading -------------------------------------------------------------------------------

    def get(self, publication_id: int) -> PublicationRow:
        with self._read() as session:
            return _to_row(_row(session, publication_id))

    def publication(self, publication_id: int) -> Publication:
        with self._read() as session:
            row = _row(session, publication_id)
            return _to_publication(row, session.get(PieceORM, row.piece_id))

    def list(
        self,
        *,
        status: str | None = None,
        platform: str | None = None,
        batch_id: str | None = None,
        limit: int | None = 100,
    ) -> list[PublicationRow]:
        query = select(PublicationORM)
        if status is not None:
            query = query.where(PublicationORM.status == status)
        if platform is not None:
            query = query.where(PublicationORM.platform == platform)
        if batch_id is not None:
            query = query.join(PieceORM, PieceORM.id == PublicationORM.piece_id).where(
                PieceORM.batch_id == batch_id
            )
        query = query.order_by(PublicationORM.scheduled_for, PublicationORM.id).limit(limit)
        with self._read() as session:
            return [_to_row(row) for row in session.scalars(query)]

    def counts(self) -> dict[str, int]:
        with self._read() as session:
            return {
                status: count
                for status, count in session.execute(
                    select(PublicationORM.status, func.count()).group_by(PublicationORM.status)
                )
            }

    def taken_slots(self, persona_id: str, platform: str) -> list[datetime]:
        """Times already used by the persona's publications on ``platform`` (any status but failed)."""
        with self._read() as session:
            return [
                when
                for when in session.scalars(
                    select(PublicationORM.scheduled_for)
                    .join(PieceORM, PieceORM.id == PublicationORM.piece_id)
                    .where(
                        PieceORM.persona_id == persona_id,
                        PublicationORM.platform == platform,
                        PublicationORM.status != "failed",
                        PublicationORM.scheduled_for.is_not(None),
                    )
                )
                if when is not None
            ]


def _row(session: Session, publication_id: int) -> PublicationORM:
    row = session.get(PublicationORM, publication_id)
    if row is None:
        raise LookupError(f"no publication with id {publication_id}")
    return row


def _to_row(row: PublicationORM) -> PublicationRow:
    return PublicationRow(
        id=row.id,
        piece_id=row.piece_id,
        platform=row.platform,
        publisher=row.publisher,
        idempotency_key=row.idempotency_key,
        status=row.status,
        scheduled_for=row.scheduled_for,
        caption=row.caption,
        media_url=row.media_url,
        platform_container_id=row.platform_container_id,
        platform_post_id=row.platform_post_id,
        post_url=row.post_url,
        attempts=row.attempts,
        last_error=row.last_error,
        detail=dict(row.detail) if row.detail else None,
        published_at=row.published_at,
        updated_at=row.updated_at,
    )


def _to_publication(row: PublicationORM, piece: PieceORM | None) -> Publication:
    detail = dict(row.detail or {})
    return Publication(
        id=row.id,
        piece_id=row.piece_id,
        persona_id=piece.persona_id if piece is not None else str(detail.get("persona_id", "")),
        platform=row.platform,
        publisher=row.publisher,
        idempotency_key=row.idempotency_key,
        caption=row.caption,
        media_url=row.media_url or (piece.url if piece is not None else None),
        storage_key=piece.storage_key if piece is not None else None,
        alt_text=str(detail.get("alt_text") or ""),
        container_id=row.platform_container_id,
        attempts=row.attempts,
        scheduled_for=row.scheduled_for,
        detail=detail,
    )
