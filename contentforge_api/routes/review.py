"""Batches and pieces as the gallery reads them, their image URLs, and review decisions on pieces."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from contentforge.db.piece_ratings import PieceRatings
from contentforge.db.registry import ModelRegistry
from contentforge.domain.models import PieceStatus
from contentforge.errors import InvalidInput
from contentforge.models import feedback
from contentforge.models.feedback import review_feedback
from contentforge.moderation.review import ReviewStateError
from contentforge.validation import PIECE_ID_PATTERN, STORED_BATCH_ID_PATTERN
from contentforge_api.auth import reviewer_for
from contentforge_api.errors import ApiError
from contentforge_api.json_answers import json_answer
from contentforge_api.responses import AUTH, documented
from contentforge_api.schemas import (
    BatchGalleryOut,
    BatchOut,
    BatchUrls,
    PieceDetailOut,
    PieceOut,
    PieceUrl,
    RatingOut,
    RatingRequest,
    ReviewOut,
    ReviewRequest,
)
from contentforge_api.state import CONTENT_ROUTE, ApiState, Reader, State, Writer

router = APIRouter(tags=["review"])
BatchId = Annotated[str, Path(pattern=STORED_BATCH_ID_PATTERN)]
PieceId = Annotated[str, Path(pattern=PIECE_ID_PATTERN)]


def _no_batch(batch_id: str) -> ApiError:
    return ApiError(404, f"no batch with id {batch_id!r} (a batch appears once its flow run starts)")


@router.get("/batches/{batch_id}", response_model=BatchOut, responses=documented(AUTH, 404))
async def get_batch(state: State, _identity: Reader, batch_id: BatchId) -> BatchOut:
    # One transaction, so the batch and its stats agree; the only blocking step, so one threadpool hop.
    batch = await run_in_threadpool(state.queries.batch_with_stats, batch_id)
    if batch is None:
        raise _no_batch(batch_id)
    return BatchOut(**batch)


@router.get("/batches/{batch_id}/pieces", response_model=list[PieceOut], responses=documented(AUTH, 404))
async def batch_pieces(state: State, _identity: Reader, batch_id: BatchId) -> Response:
    """Every piece of the batch in plan order: image URL, hooks, tier, scores, cost, status, and what
    an AUTO or ASSISTED batch's mode chose (``decision``)."""
    pieces = await run_in_threadpool(state.queries.batch_pieces, batch_id)
    if pieces is None:
        raise _no_batch(batch_id)
    return json_answer(pieces)  # PieceOuts, from the query's dicts without a second validation


@router.get("/batches/{batch_id}/gallery", response_model=BatchGalleryOut, responses=documented(AUTH, 404))
async def batch_gallery(state: State, _identity: Reader, batch_id: BatchId) -> Response:
    """The batch with its stats and every piece, from one snapshot: what the review gallery shows.

    The same ``batch`` as ``GET /batches/{id}`` and ``pieces`` as ``GET /batches/{id}/pieces``, read
    in one transaction, so the summary counts the cards it sits above, in one request."""
    found = await run_in_threadpool(state.queries.batch_gallery, batch_id)
    if found is None:
        raise _no_batch(batch_id)
    # The batch through its model (a few fields); the pieces as the query wrote them (json_answers).
    return json_answer({"batch": BatchOut(**found["batch"]), "pieces": found["pieces"]})


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


@router.get("/pieces/{piece_id}", response_model=PieceDetailOut, responses=documented(AUTH, 404))
def get_piece(state: State, _identity: Reader, piece_id: PieceId) -> PieceDetailOut:
    piece = state.queries.piece(piece_id)  # with its mode's decision, in the same transaction
    if piece is None:
        raise ApiError(404, f"no piece with id {piece_id!r}")
    return PieceDetailOut.model_validate(piece)


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
    A piece that is not waiting for review is a 409: two reviewers cannot both decide it. The decision
    (and an optional 1-5 ``rating``) updates the scores of the piece's LoRAs and parameters that the
    recommender and optimizer learn from (``learned`` lists them).
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
    learned = review_feedback(
        ModelRegistry(state.repo.sessions),
        PieceRatings(state.repo.sessions),
        piece,
        approved=body.decision == "approve",
        rater=identity.name,
        rating=body.rating,
        display_name=reviewer,
    )
    return ReviewOut(
        piece_id=piece_id,
        decision=decision.decision,
        reviewer=decision.reviewer,
        reason=decision.reason,
        status=piece.status,
        tier=piece.tier,
        created_at=decision.created_at,
        learned=learned,
    )


@router.post(
    "/pieces/{piece_id}/rating",
    response_model=RatingOut,
    responses=documented(
        AUTH,
        404,
        409,
        413,
        s409="The rater rated the piece before (a rating counts once), or it has no image yet.",
    ),
)
def rate_piece(
    state: State, identity: Writer, piece_id: PieceId, body: RatingRequest, request: Request
) -> RatingOut:
    """Rate a generated piece 1-5: its LoRAs' and parameters' scores move, and the next recommendation
    for a similar prompt with them (``contentforge models learned`` shows what was learned).

    The rater is the token identity: a second rating through the same token is a 409 and changes
    nothing, so a retried request never counts twice, whatever ``X-ContentForge-Reviewer`` name it
    sends (that name is kept with the rating as a label only).
    """
    rater = reviewer_for(identity, request)
    piece = state.repo.get_piece(piece_id)
    if piece is None:
        raise ApiError(404, f"no piece with id {piece_id!r}")
    try:
        learned = feedback.rate_piece(
            ModelRegistry(state.repo.sessions),
            PieceRatings(state.repo.sessions),
            piece,
            identity.name,
            body.rating,
            display_name=rater,
        )
    except InvalidInput as exc:  # rated before, or no image yet
        raise ApiError(409, str(exc), code="not_rated") from exc
    return RatingOut(piece_id=piece_id, rating=body.rating, rater=rater, learned=learned)
