"""Batches and pieces as the gallery reads them, their image URLs, and review decisions on pieces."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from contentforge.db import RecordNotFound
from contentforge.domain.models import PieceStatus
from contentforge.moderation.review import ReviewStateError
from contentforge.validation import PIECE_ID_PATTERN, STORED_BATCH_ID_PATTERN
from contentforge_api.auth import reviewer_for
from contentforge_api.errors import ApiError
from contentforge_api.responses import AUTH, documented
from contentforge_api.schemas import BatchOut, BatchUrls, PieceOut, PieceUrl, ReviewOut, ReviewRequest
from contentforge_api.state import CONTENT_ROUTE, ApiState, Reader, State, Writer

router = APIRouter(tags=["review"])
BatchId = Annotated[str, Path(pattern=STORED_BATCH_ID_PATTERN)]
PieceId = Annotated[str, Path(pattern=PIECE_ID_PATTERN)]


def _no_batch(batch_id: str) -> ApiError:
    return ApiError(404, f"no batch with id {batch_id!r} (a batch appears once its flow run starts)")


@router.get("/batches/{batch_id}", response_model=BatchOut, responses=documented(AUTH, 404))
def get_batch(state: State, _identity: Reader, batch_id: BatchId) -> BatchOut:
    batch = state.queries.batch(batch_id)
    if batch is None:
        raise _no_batch(batch_id)
    try:
        stats = state.repo.batch_stats(batch_id)
    except RecordNotFound as exc:  # deleted in between
        raise ApiError(404, str(exc)) from exc
    return BatchOut(**batch, stats=stats)


@router.get("/batches/{batch_id}/pieces", response_model=list[PieceOut], responses=documented(AUTH, 404))
def batch_pieces(state: State, _identity: Reader, batch_id: BatchId) -> list[PieceOut]:
    """Every piece of the batch in plan order: image URL, hooks, tier, scores, cost, status."""
    if state.queries.batch(batch_id) is None:
        raise _no_batch(batch_id)
    return [PieceOut.model_validate(p) for p in state.queries.batch_pieces(batch_id)]


@router.get(
    "/batches/{batch_id}/urls",
    response_model=BatchUrls,
    responses=documented(AUTH, 404, 503, s503="The storage backend could not sign a URL."),
)
def batch_urls(
    state: State,
    _identity: Reader,
    batch_id: BatchId,
    request: Request,
    status: Annotated[PieceStatus | None, Query(description="Only pieces in this status.")] = None,
) -> BatchUrls:
    """The image URL of every piece of the batch in one call, in plan order.

    S3 storage gives CDN URLs (``CONTENTFORGE_PUBLIC_BASE_URL``) or presigned GET URLs (signed
    locally, no request per piece); local storage gives this API's ``/content/...`` URLs, which need
    the bearer token.
    """
    if state.queries.batch(batch_id) is None:
        raise _no_batch(batch_id)
    rows = state.queries.batch_storage_keys(batch_id, status=status.value if status else None)
    settings = state.settings
    if settings.storage_backend == "s3":
        kind = "cdn" if settings.public_base_url else "presigned"
        expires = None if settings.public_base_url else settings.s3_presign_expiry_s
    else:
        kind, expires = "api", None
    return BatchUrls(
        batch_id=batch_id,
        storage=settings.storage_backend,
        url_kind=kind,
        expires_in_s=expires,
        items=[
            PieceUrl(
                piece_id=row["id"],
                index=row["index"],
                status=row["status"],
                tier=row["tier"],
                url=_url_of(state, request, row["storage_key"]),
            )
            for row in rows
        ],
    )


def _url_of(state: ApiState, request: Request, storage_key: str | None) -> str | None:
    if not storage_key:
        return None
    if state.settings.storage_backend == "local":
        return str(request.base_url).rstrip("/") + CONTENT_ROUTE + "/" + storage_key.removeprefix("content/")
    return state.storage().url_for(storage_key)


@router.get("/pieces/{piece_id}", response_model=PieceOut, responses=documented(AUTH, 404))
def get_piece(state: State, _identity: Reader, piece_id: PieceId) -> PieceOut:
    piece = state.queries.piece(piece_id)
    if piece is None:
        raise ApiError(404, f"no piece with id {piece_id!r}")
    return PieceOut.model_validate(piece)


@router.post(
    "/pieces/{piece_id}/review",
    response_model=ReviewOut,
    responses=documented(AUTH, 404, 409, 413, s409="The piece is not waiting for review."),
)
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
