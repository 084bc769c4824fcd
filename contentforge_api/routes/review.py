"""Batches and pieces as the gallery reads them, and review decisions (approve/reject) on pieces."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from contentforge.db import RecordNotFound
from contentforge.moderation.review import ReviewStateError
from contentforge.validation import PIECE_ID_PATTERN, STORED_BATCH_ID_PATTERN
from contentforge_api.auth import reviewer_for
from contentforge_api.errors import ApiError
from contentforge_api.schemas import BatchOut, PieceOut, ReviewOut, ReviewRequest
from contentforge_api.state import Reader, State, Writer

router = APIRouter(tags=["review"])
BatchId = Annotated[str, Path(pattern=STORED_BATCH_ID_PATTERN)]
PieceId = Annotated[str, Path(pattern=PIECE_ID_PATTERN)]


@router.get("/batches/{batch_id}", response_model=BatchOut)
def get_batch(state: State, _identity: Reader, batch_id: BatchId) -> BatchOut:
    batch = state.queries.batch(batch_id)
    if batch is None:
        raise ApiError(404, f"no batch with id {batch_id!r} (a batch appears once its flow run starts)")
    try:
        stats = state.repo.batch_stats(batch_id)
    except RecordNotFound as exc:  # deleted in between
        raise ApiError(404, str(exc)) from exc
    return BatchOut(**batch, stats=stats)


@router.get("/batches/{batch_id}/pieces", response_model=list[PieceOut])
def batch_pieces(state: State, _identity: Reader, batch_id: BatchId) -> list[PieceOut]:
    """Every piece of the batch in plan order: image URL, hooks, tier, scores, cost, status."""
    if state.queries.batch(batch_id) is None:
        raise ApiError(404, f"no batch with id {batch_id!r} (a batch appears once its flow run starts)")
    return [PieceOut.model_validate(p) for p in state.queries.batch_pieces(batch_id)]


@router.get("/pieces/{piece_id}", response_model=PieceOut)
def get_piece(state: State, _identity: Reader, piece_id: PieceId) -> PieceOut:
    piece = state.queries.piece(piece_id)
    if piece is None:
        raise ApiError(404, f"no piece with id {piece_id!r}")
    return PieceOut.model_validate(piece)


@router.post("/pieces/{piece_id}/review", response_model=ReviewOut)
def review_piece(
    state: State, identity: Writer, piece_id: PieceId, body: ReviewRequest, request: Request
) -> ReviewOut:
    """Approve (status ``ready``) or reject (``rejected``, reason required) a piece in ``needs_review``.

    The reviewer recorded is the token identity (plus the ``X-ContentForge-Reviewer`` name if sent).
    A piece that is not waiting for review is a 409: two reviewers cannot both decide it.
    """
    reviewer = reviewer_for(identity, request)
    if state.repo.get_piece(piece_id) is None:
        raise ApiError(404, f"no piece with id {piece_id!r}")
    try:
        if body.decision == "approve":
            decision = state.review.approve(piece_id, reviewer=reviewer, reason=body.reason, tier=body.tier)
        else:
            decision = state.review.reject(piece_id, reviewer=reviewer, reason=body.reason)
    except ReviewStateError as exc:
        raise ApiError(409, str(exc), code="not_in_review") from exc
    piece = state.repo.get_piece(piece_id)
    assert piece is not None
    return ReviewOut(
        piece_id=piece_id,
        decision=decision.decision,
        reviewer=decision.reviewer,
        reason=decision.reason,
        status=piece.status,
        tier=piece.tier,
        created_at=decision.created_at,
    )
