"""The human review queue: pieces the policy would not decide alone (status ``needs_review``).

A piece enters the queue right after its verdict is saved, when the policy's ``assess`` says it is
borderline or disputed (``hold``). A reviewer then approves it (status ``ready``, optionally with a
tier they choose) or rejects it (status ``rejected``); every decision is kept in
``review_decisions`` with the reviewer and the reason, newest last. Deciding a piece that is not
waiting for review is refused with ``ReviewStateError``, so two reviewers cannot both decide it
(the status check and the update run in one write transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from contentforge.db.models import PieceORM, ReviewDecisionORM, utcnow
from contentforge.db.pieces import content_hash_of
from contentforge.db.sessions import SessionPolicy
from contentforge.domain.models import PieceStatus, Verdict
from contentforge.errors import InvalidInput

if TYPE_CHECKING:
    from contentforge.config import Settings
    from contentforge.db.repository import Repository

MAX_REVIEWER_CHARS = 120
REVIEWABLE_TIERS = (Verdict.safe, Verdict.suggestive, Verdict.restricted)


class ReviewStateError(InvalidInput):
    """The piece does not exist or is not waiting for review."""


@dataclass(frozen=True)
class ReviewItem:
    """What a reviewer needs to decide one piece."""

    piece_id: str
    batch_id: str
    persona_id: str
    template_id: str
    verdict: str | None
    tier: str | None
    scores: dict[str, float]
    reasons: list[str]
    storage_key: str | None
    url: str | None
    updated_at: datetime


@dataclass(frozen=True)
class ReviewDecision:
    piece_id: str
    decision: str
    reviewer: str
    reason: str
    created_at: datetime


class ReviewQueue:
    """Queries and decisions on ``needs_review`` pieces, in short transactions."""

    def __init__(self, engine: Engine | SessionPolicy) -> None:
        self._db = SessionPolicy.of(engine)

    @classmethod
    def from_settings(cls, settings: Settings) -> ReviewQueue:
        """The queue on the configured database, migrated to head first."""
        from contentforge.db.repository import Repository

        return cls.for_repository(Repository.open(settings.resolved_database_url))

    @classmethod
    def for_repository(cls, repo: Repository) -> ReviewQueue:
        """The queue on ``repo``'s database, with its session policy."""
        return cls(repo.sessions)

    def pending(
        self, *, batch_id: str | None = None, persona_id: str | None = None, limit: int | None = None
    ) -> list[ReviewItem]:
        """Pieces waiting for review, oldest first, optionally of one batch and/or persona."""
        query = select(PieceORM).where(PieceORM.status == PieceStatus.needs_review.value)
        if batch_id is not None:
            query = query.where(PieceORM.batch_id == batch_id)
        if persona_id is not None:
            query = query.where(PieceORM.persona_id == persona_id)
        query = query.order_by(PieceORM.created_at, PieceORM.batch_id, PieceORM.index).limit(limit)
        with self._db.read() as session:
            return [_item(piece) for piece in session.scalars(query)]

    def approve(
        self, piece_id: str, *, reviewer: str, reason: str = "", tier: Verdict | str | None = None
    ) -> ReviewDecision:
        """Make the piece ``ready``; ``tier`` (safe/suggestive/restricted) overrides the policy's tier."""
        chosen: Verdict | None = None
        if tier is not None:
            try:
                chosen = Verdict(tier)
            except ValueError:
                chosen = None
            if chosen not in REVIEWABLE_TIERS:
                raise InvalidInput(
                    f"tier must be one of {', '.join(t.value for t in REVIEWABLE_TIERS)}, got {tier!r}"
                )
        return self._decide(piece_id, "approve", reviewer, reason, chosen)

    def reject(self, piece_id: str, *, reviewer: str, reason: str) -> ReviewDecision:
        """Make the piece ``rejected``; a reason is required (it is what the creator will read)."""
        if not reason.strip():
            raise InvalidInput("a rejection needs a reason")
        return self._decide(piece_id, "reject", reviewer, reason, None)

    def decisions(self, piece_id: str) -> list[ReviewDecision]:
        """Every decision on the piece, oldest first."""
        query = (
            select(ReviewDecisionORM)
            .where(ReviewDecisionORM.piece_id == piece_id)
            .order_by(ReviewDecisionORM.created_at, ReviewDecisionORM.id)
        )
        with self._db.read() as session:
            return [_decision(row) for row in session.scalars(query)]

    def _decide(
        self, piece_id: str, decision: str, reviewer: str, reason: str, tier: Verdict | None
    ) -> ReviewDecision:
        reviewer = reviewer.strip()
        if not reviewer or len(reviewer) > MAX_REVIEWER_CHARS:
            raise InvalidInput(f"reviewer must be 1-{MAX_REVIEWER_CHARS} characters")
        with self._db.write() as session:
            piece = _piece(session, piece_id, for_update=True)
            if piece.status != PieceStatus.needs_review.value:
                raise ReviewStateError(
                    f"piece {piece_id!r} is {piece.status!r}, not waiting for review; "
                    "see `contentforge review list`"
                )
            if decision == "approve" and piece.moderated_hash != content_hash_of(piece):
                # The reviewer saw what moderation held; anything else must be moderated first.
                raise ReviewStateError(
                    f"piece {piece_id!r} changed after it was moderated; it must be moderated again "
                    "before anyone can approve it"
                )
            row = ReviewDecisionORM(
                piece_id=piece_id,
                decision=decision,
                reviewer=reviewer,
                reason=reason.strip(),
                created_at=utcnow(),
            )
            session.add(row)
            if decision == "approve":
                piece.status = PieceStatus.ready.value
                if tier is not None:
                    piece.verdict = piece.tier = tier.value
                elif piece.tier is None:
                    piece.tier = piece.verdict
            else:
                piece.status = PieceStatus.rejected.value
                piece.tier = None
            session.flush()
            return _decision(row)


def _piece(session: Session, piece_id: str, *, for_update: bool = False) -> PieceORM:
    piece = session.get(PieceORM, piece_id, with_for_update=for_update)
    if piece is None:
        raise ReviewStateError(f"no piece with id {piece_id!r}")
    return piece


def _item(piece: PieceORM) -> ReviewItem:
    scores: dict[str, Any] = piece.moderation_scores or {}
    return ReviewItem(
        piece_id=piece.id,
        batch_id=piece.batch_id,
        persona_id=piece.persona_id,
        template_id=piece.template_id,
        verdict=piece.verdict,
        tier=piece.tier,
        scores={k: float(v) for k, v in scores.items()},
        reasons=list(piece.moderation_reasons or []),
        storage_key=piece.storage_key,
        url=piece.url,
        updated_at=piece.updated_at,
    )


def _decision(row: ReviewDecisionORM) -> ReviewDecision:
    return ReviewDecision(row.piece_id, row.decision, row.reviewer, row.reason, row.created_at)
