"""The exactly-once publishing ledger on the ``publications`` table (SQLite and PostgreSQL).

State machine of one row (one piece on one platform)::

    scheduled ──claim──► publishing ──► published
        ▲                   │  │
        └── rate limited ───┘  └──► failed (permanent error, or too many attempts)

* ``schedule`` only accepts pieces that are ``ready``, whose verdict the platform accepts and whose
  verdict is bound to their current content (``pieces.moderated_hash``, see
  ``domain.binding``); the row keeps that hash (``content_hash``) and the image it will post
  (``detail.media``: the piece's own, or a variation chosen as its cover whose own verdict allows
  the platform; ``cover_binding``). A caption that is not one of
  the piece's judged hooks (a ``caption=`` override, or one written by ``caption_writer``) is judged
  right there by ``caption_judge`` and the row keeps the hash of what was judged.
* ``claim_due`` moves due rows to ``publishing`` with a guarded ``UPDATE … WHERE status =
  'scheduled'``: of two workers racing for a row, exactly one sees ``rowcount == 1``. A claim is a
  *lease*: a fresh ``claim_token`` and ``claim_expires_at``, renewed by ``hold`` while the platform
  call runs. Only a row whose lease expired (its worker died) is reclaimed.
* Every write after the claim is fenced (``UPDATE … WHERE id = :id AND claim_token = :token``): a
  worker whose lease was taken over gets ``ClaimLost`` and never overwrites the new holder's row.
* ``record_container`` stores the platform's intermediate id *before* the final publish call, so
  a reclaimed row resumes with it and never creates a second container or post; ``begin_prepare``
  notes that a prepare call started, so a resume knows one may have happened without its id;
  ``begin_publish`` notes the same of the final publish call (``publish_pending``, cleared by
  ``mark_published``), so no later attempt posts again unless its publisher can settle the first.
* When a row is claimed, and again right before the platform call (``publish_refusal``), the piece
  is checked: a piece rejected, changed or re-moderated after scheduling fails its publications
  instead of being posted.

Why one module of ~770 lines: it is the publications aggregate's repository, and every transition
above shares the same fenced writes and eligibility checks; split, the state machine would no longer
read top to bottom in one place.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contentforge.config import PUBLISH_LEASE_MIN_S
from contentforge.db.leases import kept_alive
from contentforge.db.models import PersonaORM, PieceORM, PublicationORM, utcnow
from contentforge.db.pieces import hooks_of
from contentforge.db.sessions import SessionPolicy
from contentforge.domain.binding import judged_hash, judged_texts
from contentforge.domain.models import Hook, ModerationVerdict, Persona, PieceStatus, Platform, Verdict
from contentforge.errors import ContentForgeError, InvalidInput
from contentforge.moderation.policy import ModerationPolicy
from contentforge.moderation.protocol import ModerationInput
from contentforge.moderation.text_rules import TextRulesBackend
from contentforge.publishing.cover_binding import bind_image, bound_as_cover, bound_image, image_refusal
from contentforge.publishing.protocol import Publication, PublishedPost
from contentforge.redaction import redact_text as _redact_text

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000
DEFAULT_LEASE_S = 900.0
UNBOUND = "piece has no moderation verdict bound to its content; moderate it again"
CHANGED = "content changed after moderation; moderate again"


def idempotency_key(piece_id: str, platform: str) -> str:
    """The deterministic key of one piece on one platform (the same on every machine and rerun)."""
    digest = hashlib.sha256(f"contentforge-publication:{piece_id}:{platform}".encode()).hexdigest()
    return f"cf-{digest[:40]}"


def caption_sha256(caption: str) -> str:
    return hashlib.sha256(caption.encode("utf-8")).hexdigest()


def check_lease(lease_s: float) -> float:
    """``lease_s`` when it is long enough; ``InvalidInput`` naming the setting otherwise."""
    if lease_s < PUBLISH_LEASE_MIN_S:
        raise InvalidInput(
            f"CONTENTFORGE_PUBLISH_STALE_AFTER_S={lease_s:g}: a publishing claim's lease must be at "
            f"least {PUBLISH_LEASE_MIN_S} s (longer than the longest platform HTTP call), or another "
            "run could reclaim a row while the first is still posting it"
        )
    return lease_s


class PublishRefused(InvalidInput):
    """A piece may not be scheduled on a platform; the message says why."""


class ClaimLost(ContentForgeError):
    """This worker's claim on a publication expired and another worker holds it now.

    Nothing was written: the current holder records the outcome (and resumes with the stored
    container id, so the post is not made twice).
    """


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
    content_hash: str | None = None
    claim_token: str | None = None
    claim_expires_at: datetime | None = None


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

CaptionJudge = Callable[[str], ModerationVerdict]
"""Moderates one caption text that no moderation pass of the piece judged."""


def text_rules_judge(policy: ModerationPolicy) -> CaptionJudge:
    """The local text rules under ``policy``: the text half of the default ``local`` moderation."""
    backend = TextRulesBackend()

    def judge(caption: str) -> ModerationVerdict:
        scores = backend.scores(ModerationInput(image=None, texts=(caption,)))
        return policy.decide([(backend.name, scores)])

    return judge


@dataclass
class Hold:
    """A running lease renewal; ``lost`` is set when the claim was taken over."""

    lease_s: float
    lost: threading.Event = field(default_factory=threading.Event)


def _lock_cover_family(session: Session, piece_id: str) -> None:
    """Lock the row of the piece a cover family hangs on (the piece, or its parent for a variation).

    Scheduling a piece checks that its cover variation has no publication of its own, and scheduling a
    variation checks that its parent's publication does not post its image: each reads the other's
    rows, then inserts its own. On PostgreSQL two such transactions would both pass and the same image
    would go out twice; locking the family's one row first makes them take turns (SQLite's
    ``BEGIN IMMEDIATE`` already does).
    """
    parent = session.scalar(select(PieceORM.parent_piece_id).where(PieceORM.id == piece_id))
    session.execute(select(PieceORM.id).where(PieceORM.id == (parent or piece_id)).with_for_update())


class PublicationLedger:
    """Short transactions over ``publications``; safe to share between threads and processes."""

    renew_every_s: float | None = None
    """Seconds between lease renewals while a platform call runs (``None``: a third of the lease)."""

    def __init__(
        self,
        engine: Engine | SessionPolicy,
        policy: ModerationPolicy,
        *,
        caption_writer: CaptionWriter | None = None,
        caption_label: Callable[[str, str], str] | None = None,
        caption_judge: CaptionJudge | None = None,
    ) -> None:
        self._db = SessionPolicy.of(engine)
        self.engine = self._db.engine
        self.policy = policy
        self.caption_writer = caption_writer
        self.caption_label = caption_label
        """``(platform, caption) -> caption`` adding the AI disclosure label (``moderation.disclosure``)."""
        self.caption_judge = caption_judge or text_rules_judge(policy)
        """Judges captions that are not one of the piece's moderated hooks (override or written)."""

    def _write(self) -> AbstractContextManager[Session]:
        return self._db.write()

    def _read(self) -> AbstractContextManager[Session]:
        return self._db.read()

    # --- eligibility and scheduling ------------------------------------------------------------

    def refusal(self, piece: PieceORM | None, platform: str, session: Session | None = None) -> str | None:
        """Why ``piece`` may not go to ``platform`` now; ``None`` when it may.

        Besides status and verdict, the verdict must be bound to the piece's current content: its
        ``moderated_hash`` equals the hash recomputed from the stored image, prompt and hooks.
        """
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
        if not piece.moderated_hash:
            return UNBOUND
        if session is None:
            with self._read() as reading:
                current = self._current_hash(reading, piece)
        else:
            current = self._current_hash(session, piece)
        if current != piece.moderated_hash:
            return f"{CHANGED} (its image, prompt or a hook differs from what the verdict judged)"
        return None

    def _hooks(self, session: Session, piece_id: str) -> list[Hook] | None:
        """The piece's hooks as domain objects; ``None`` when one does not validate any more."""
        piece = session.get(PieceORM, piece_id)
        if piece is None:
            return []
        try:
            return hooks_of(piece)
        except ValueError:  # pydantic's ValidationError too
            return None

    def _current_hash(self, session: Session, piece: PieceORM) -> str | None:
        hooks = self._hooks(session, piece.id)
        if hooks is None:
            return None
        return judged_hash(piece.content_sha256, judged_texts(piece.prompt, hooks))

    def schedule(
        self, piece_id: str, platform: str, when: datetime, *, publisher: str, caption: str | None = None
    ) -> tuple[int, bool]:
        """Schedule ``piece_id`` on ``platform`` at ``when``; ``(publication id, created)``.

        Scheduling the same piece and platform again returns the existing publication unchanged.
        Raises ``PublishRefused`` when the piece may not be published there, or when its caption
        is not a judged hook and ``caption_judge`` does not accept it on the platform.
        """
        if when.tzinfo is None or when.utcoffset() is None:
            raise InvalidInput(f"scheduled time must be timezone-aware, got {when.isoformat()}")
        platform = platform.strip().lower()
        with self._write() as session:
            _lock_cover_family(session, piece_id)
            existing = session.scalars(
                select(PublicationORM).where(
                    PublicationORM.piece_id == piece_id, PublicationORM.platform == platform
                )
            ).first()
            if existing is not None:
                return existing.id, False
            piece = session.get(PieceORM, piece_id)
            reason = self.refusal(piece, platform, session)
            if reason is None and piece is not None:
                reason = bound_as_cover(session, piece, platform)
            if reason is not None:
                raise PublishRefused(f"piece {piece_id} on {platform}: {reason}")
            assert piece is not None
            text, alt_text, from_hook = self._caption(session, piece, Platform(platform), caption)
            # The image is bound now (the chosen cover, when moderation allows it here), never later.
            image = bind_image(session, piece, platform, self.refusal)
            detail: dict[str, Any] = {"alt_text": alt_text, "persona_id": piece.persona_id, "media": image}
            if not from_hook:
                detail.update(self._judge_caption(piece_id, Platform(platform), text))
            labelled = self.caption_label(platform, text) if self.caption_label is not None else text
            if not from_hook:
                detail["judged_caption_sha256"] = sorted({caption_sha256(text), caption_sha256(labelled)})
            row = PublicationORM(
                piece_id=piece_id,
                platform=platform,
                publisher=publisher,
                idempotency_key=idempotency_key(piece_id, platform),
                status="scheduled",
                scheduled_for=when.astimezone(UTC),
                caption=labelled,
                media_url=image["url"],
                content_hash=piece.moderated_hash,
                attempts=0,
                detail=detail,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                # Another scheduler inserted the same (piece, platform) in between: theirs stands.
                raise PublishRefused(f"piece {piece_id} on {platform}: scheduled concurrently") from None
            return row.id, True

    def _judge_caption(self, piece_id: str, platform: Platform, text: str) -> dict[str, Any]:
        """Moderate a caption no pass of the piece judged; refuse it unless the platform accepts it."""
        verdict = self.caption_judge(text)
        if not self.policy.platform_accepts(verdict.verdict, platform):
            why = "; ".join(verdict.reasons[:3]) or "no reason given"
            raise PublishRefused(
                f"piece {piece_id} on {platform.value}: its caption (not one of the moderated hooks) "
                f"was judged {verdict.verdict.value!r}, not accepted on {platform.value}: {why}"
            )
        return {"caption_verdict": verdict.verdict.value}

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
    ) -> tuple[str, str, bool]:
        """``(caption, alt_text, from_hook)``: ``from_hook`` when moderation judged the caption."""
        persona_row = session.get(PersonaORM, piece.persona_id)
        persona = Persona.model_validate(persona_row.data) if persona_row is not None else None
        alt_text = f"AI-generated image by {persona.name}" if persona else "AI-generated image"
        hooks = [hook for hook in self._hooks(session, piece.id) or [] if hook.platform == platform]
        # A hook the quality gate marked needs_review is never published, not even when asked for.
        held = {hook.caption for hook in hooks if hook.held_by_quality_gate}
        hooks = [hook for hook in hooks if not hook.held_by_quality_gate]
        if caption is not None:
            if caption in held and not any(hook.caption == caption for hook in hooks):
                raise PublishRefused(
                    f"piece {piece.id} on {platform.value}: that caption is a hook the quality gate "
                    "marked needs_review"
                )
            return caption, alt_text, any(hook.caption == caption for hook in hooks)
        if hooks:
            return hooks[0].caption, alt_text, True
        if held:
            raise PublishRefused(
                f"piece {piece.id} on {platform.value}: every hook for this platform is held for review "
                "by the quality gate"
            )
        if self.caption_writer is not None and persona is not None:
            written = self.caption_writer(piece, persona, platform)
            if written is not None:
                return written[0], written[1], False
        raise PublishRefused(f"piece {piece.id} on {platform.value}: no caption (no hook for this platform)")

    # --- claiming ------------------------------------------------------------------------------

    def claim_due(
        self, *, limit: int = 10, now: datetime | None = None, stale_after_s: float = DEFAULT_LEASE_S
    ) -> list[Publication]:
        """Claim up to ``limit`` due publications for this worker (status → ``publishing``).

        Due means ``scheduled`` with ``scheduled_for <= now``, or ``publishing`` with an expired
        lease (its worker died; it resumes with its stored container id). Each claim is a guarded
        UPDATE that sets a fresh ``claim_token`` and a lease of ``stale_after_s`` seconds, so
        concurrent claimers never get the same row. The lease must outlast any single platform call
        (``PUBLISH_LEASE_MIN_S``); ``hold`` renews it while the call runs.
        """
        lease_s = check_lease(stale_after_s)
        now = now or utcnow()
        with self._read() as session:
            candidates = session.execute(
                select(PublicationORM.id)
                .where(_due(now, lease_s))
                .order_by(PublicationORM.scheduled_for, PublicationORM.id)
                .limit(limit * 3)
            ).all()
        claimed: list[Publication] = []
        for (publication_id,) in candidates:
            if len(claimed) >= limit:
                break
            publication = self._claim_one(publication_id, now, lease_s)
            if publication is not None:
                claimed.append(publication)
        return claimed

    def _claim_one(self, publication_id: int, now: datetime, lease_s: float) -> Publication | None:
        token = uuid.uuid4().hex
        with self._write() as session:
            result = session.execute(
                update(PublicationORM)
                .where(PublicationORM.id == publication_id, _due(now, lease_s))
                .values(
                    status="publishing",
                    attempts=PublicationORM.attempts + 1,
                    claim_token=token,
                    claim_expires_at=utcnow() + timedelta(seconds=lease_s),
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], result).rowcount != 1:  # an UPDATE's result is a cursor result
                return None  # another worker got it first
            row = session.get(PublicationORM, publication_id)
            assert row is not None
            piece = session.get(PieceORM, row.piece_id)
            reason = self._publish_refusal(session, row, piece)
            if reason is not None:
                row.status = "failed"
                row.last_error = f"not published: {reason}"
                row.claim_token = row.claim_expires_at = None
                logger.warning("publication %s (piece %s) not published: %s", row.id, row.piece_id, reason)
                return None
            return _to_publication(row, piece, lease_s)

    def _publish_refusal(self, session: Session, row: PublicationORM, piece: PieceORM | None) -> str | None:
        """Why the claimed ``row`` must not be posted now: the piece, its verdict binding, the caption."""
        reason = self.refusal(piece, row.platform, session)
        if reason is not None:
            return reason
        assert piece is not None
        if row.content_hash != piece.moderated_hash:
            return (
                f"{CHANGED} (the verdict bound when this publication was scheduled is not the piece's "
                "verdict any more)"
                if row.content_hash
                else f"scheduled before its verdict was bound to its content; {CHANGED}"
            )
        hooks = self._hooks(session, piece.id) or []
        allowed = {caption for hook in hooks for caption in self._labelled(row.platform, hook.caption)}
        judged = (row.detail or {}).get("judged_caption_sha256") or []
        if row.caption not in allowed and caption_sha256(row.caption) not in judged:
            return f"its caption is not a text moderation judged; {CHANGED}"
        return image_refusal(session, row, piece, self.refusal)

    def _labelled(self, platform: str, caption: str) -> tuple[str, ...]:
        if self.caption_label is None:
            return (caption,)
        return caption, self.caption_label(platform, caption)

    def publish_refusal(self, publication: Publication) -> str | None:
        """The claim-time checks again, right before the platform call; ``None`` when it may go."""
        with self._read() as session:
            row = _row(session, publication.id)
            return self._publish_refusal(session, row, session.get(PieceORM, row.piece_id))

    def claimed(self, publication_id: int, claim_token: str) -> Publication:
        """The publication as its claim holder sees it now; ``ClaimLost`` when the claim moved on."""
        with self._read() as session:
            row = _row(session, publication_id)
            if row.status != "publishing" or row.claim_token != claim_token:
                raise ClaimLost(_lost_message(publication_id, claim_token))
            return _to_publication(row, session.get(PieceORM, row.piece_id))

    # --- the lease -----------------------------------------------------------------------------

    def renew(self, publication_id: int, claim_token: str | None, lease_s: float = DEFAULT_LEASE_S) -> None:
        """Extend the claim's lease to ``lease_s`` from now; ``ClaimLost`` if it is not ours any more."""
        self._fenced(
            publication_id, claim_token, claim_expires_at=utcnow() + timedelta(seconds=check_lease(lease_s))
        )

    touch = renew

    @contextmanager
    def hold(self, publication: Publication, lease_s: float | None = None) -> Iterator[Hold]:
        """Renew ``publication``'s lease in a background thread while the block runs.

        The thread renews every third of the lease (or ``renew_every_s``); a renewal that finds
        the claim taken over sets ``hold.lost`` and stops. A renewal that fails for another reason
        (a database hiccup) is logged and retried at the next tick.
        """
        if publication.claim_token is None:
            raise ClaimLost(f"publication {publication.id} was not claimed by this worker")
        lease = check_lease(lease_s or publication.lease_s or DEFAULT_LEASE_S)
        every = self.renew_every_s or lease / 3
        token = publication.claim_token

        def renew_claim() -> bool:
            try:
                self.renew(publication.id, token, lease)
            except ClaimLost:
                return False
            return True

        with kept_alive(renew_claim, every, f"publication {publication.id}") as lost:
            yield Hold(lease, lost)

    # --- outcomes (fenced: only the current claim holder may write) ----------------------------

    def _fenced(self, publication_id: int, fence: str | None, **values: Any) -> None:
        with self._write() as session:
            self._fenced_in(session, publication_id, fence, **values)

    def _fenced_in(self, session: Session, publication_id: int, fence: str | None, **values: Any) -> None:
        result = session.execute(
            update(PublicationORM)
            .where(
                PublicationORM.id == publication_id,
                PublicationORM.claim_token == fence,
                PublicationORM.status == "publishing",
            )
            .values(**values, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], result).rowcount != 1:  # an UPDATE's result is a cursor result
            raise ClaimLost(_lost_message(publication_id, fence))

    def begin_prepare(self, publication_id: int, claim_token: str | None) -> int:
        """Note that a prepare call (container, upload, init) is about to start; returns how many did.

        A resume that finds a started prepare but no stored container id knows the platform may
        hold an object this ledger never heard of (see ``publish_claimed``).
        """
        with self._write() as session:
            detail = dict(_row(session, publication_id).detail or {})
            detail["prepares_started"] = int(detail.get("prepares_started") or 0) + 1
            detail["prepare_started_at"] = utcnow().isoformat()
            detail["prepare_pending"] = True
            self._fenced_in(session, publication_id, claim_token, detail=detail)
            return int(detail["prepares_started"])

    def end_prepare(self, publication_id: int, claim_token: str | None) -> None:
        """The prepare call answered without creating anything (a typed refusal from the platform)."""
        with self._write() as session:
            detail = {**(_row(session, publication_id).detail or {}), "prepare_pending": False}
            self._fenced_in(session, publication_id, claim_token, detail=detail)

    def begin_publish(self, publication_id: int, claim_token: str | None) -> None:
        """Note that the final publish call is about to start (``detail.publish_pending``).

        Until ``mark_published`` (or ``end_publish``) clears it, a later attempt knows a post may
        exist that this ledger never recorded (see ``publish_claimed``).
        """
        with self._write() as session:
            detail = dict(_row(session, publication_id).detail or {})
            detail["publishes_started"] = int(detail.get("publishes_started") or 0) + 1
            detail["publish_started_at"] = utcnow().isoformat()
            detail["publish_pending"] = True
            self._fenced_in(session, publication_id, claim_token, detail=detail)

    def end_publish(self, publication_id: int, claim_token: str | None) -> None:
        """The publish call answered with a refusal (rate limit, permanent error): nothing was posted."""
        with self._write() as session:
            detail = {**(_row(session, publication_id).detail or {}), "publish_pending": False}
            self._fenced_in(session, publication_id, claim_token, detail=detail)

    def record_container(self, publication_id: int, claim_token: str | None, container_id: str) -> None:
        """Store the platform's intermediate id; must happen before the final publish call."""
        with self._write() as session:
            row = _row(session, publication_id)
            if row.platform_container_id and row.platform_container_id != container_id:
                raise InvalidInput(
                    f"publication {publication_id} already has container {row.platform_container_id}"
                )
            detail = {
                **(row.detail or {}),
                "container_created_at": utcnow().isoformat(),
                "prepare_pending": False,
            }
            self._fenced_in(
                session, publication_id, claim_token, platform_container_id=container_id, detail=detail
            )

    def mark_published(
        self, publication_id: int, claim_token: str | None, post: PublishedPost
    ) -> PublicationRow:
        with self._write() as session:
            row = _row(session, publication_id)
            detail = {
                **(row.detail or {}),
                **{k: v for k, v in post.detail.items() if v is not None},
                "publish_pending": False,
            }
            self._fenced_in(
                session,
                publication_id,
                claim_token,
                status="published",
                platform_post_id=post.post_id,
                post_url=post.url,
                published_at=utcnow(),
                last_error=None,
                detail=detail,
                claim_token=None,
                claim_expires_at=None,
            )
            session.expire(row)
            return _to_row(_row(session, publication_id))

    def mark_failed(self, publication_id: int, claim_token: str | None, error: str) -> PublicationRow:
        return self._finish(
            publication_id, claim_token, status="failed", last_error=_redact_text(error)[:MAX_ERROR_CHARS]
        )

    def reschedule(
        self, publication_id: int, claim_token: str | None, at: datetime, error: str
    ) -> PublicationRow:
        """Back to ``scheduled`` at ``at`` (rate limit, quota, or a transient error to retry later)."""
        return self._finish(
            publication_id,
            claim_token,
            status="scheduled",
            scheduled_for=at.astimezone(UTC),
            last_error=_redact_text(error)[:MAX_ERROR_CHARS],
        )

    def _finish(self, publication_id: int, claim_token: str | None, **values: Any) -> PublicationRow:
        with self._write() as session:
            self._fenced_in(
                session, publication_id, claim_token, **values, claim_token=None, claim_expires_at=None
            )
            return _to_row(_row(session, publication_id))

    def note_error(self, publication_id: int, claim_token: str | None, error: str) -> None:
        self._fenced(publication_id, claim_token, last_error=_redact_text(error)[:MAX_ERROR_CHARS])

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

    def taken_slots(self, persona_id: str, platform: str) -> builtins.list[datetime]:  # list: a method here
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


def _due(now: datetime, lease_s: float) -> Any:
    """Rows a claimer may take at ``now``: scheduled and due, or publishing with an expired lease.

    A ``publishing`` row without a lease (claimed before leases existed) counts as expired once it
    was untouched for ``lease_s``.
    """
    return or_(
        and_(PublicationORM.status == "scheduled", PublicationORM.scheduled_for <= now),
        and_(
            PublicationORM.status == "publishing",
            or_(
                PublicationORM.claim_expires_at < now,
                and_(
                    PublicationORM.claim_expires_at.is_(None),
                    PublicationORM.updated_at < now - timedelta(seconds=lease_s),
                ),
            ),
        ),
    )


def _lost_message(publication_id: int, claim_token: str | None) -> str:
    return (
        f"publication {publication_id}: claim {str(claim_token)[:8]} is no longer held (its lease "
        "expired and another run claimed the row, or it was finished); nothing was written"
    )


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
        content_hash=row.content_hash,
        claim_token=row.claim_token,
        claim_expires_at=row.claim_expires_at,
    )


def _to_publication(row: PublicationORM, piece: PieceORM | None, lease_s: float | None = None) -> Publication:
    detail = dict(row.detail or {})
    image = bound_image(detail)  # the image bound when it was scheduled (own or a variation's cover)
    return Publication(
        id=row.id,
        piece_id=row.piece_id,
        persona_id=piece.persona_id if piece is not None else str(detail.get("persona_id", "")),
        platform=row.platform,
        publisher=row.publisher,
        idempotency_key=row.idempotency_key,
        caption=row.caption,
        media_url=row.media_url or (piece.url if piece is not None else None),
        storage_key=image["storage_key"] if image else piece.storage_key if piece is not None else None,
        alt_text=str(detail.get("alt_text") or ""),
        container_id=row.platform_container_id,
        attempts=row.attempts,
        scheduled_for=row.scheduled_for,
        detail=detail,
        claim_token=row.claim_token,
        lease_s=lease_s,
        content_sha256=(
            image["content_sha256"] if image else piece.content_sha256 if piece is not None else None
        ),
    )
