"""Variations of a stored piece as pieces of their own: planned, generated, stored and moderated.

A variation batch holds N pieces derived from one parent piece (``models.requests.variation_requests``:
seed, guidance, LoRA weight or prompt varied, everything else replayed from the parent's record). Each
piece row says which piece it varies (``parent_piece_id``) and carries its exact request in its
generation columns while planned, so the batch flow (the API's route) and the CLI's in-process run
generate the same image. The parent's hooks are copied (a variation changes the image, not the post),
so moderation judges the variation with the texts it would be published with.

Why the batch id is derived from (parent, vary, count): asking again for the same variations, after a
crash or twice by mistake, resumes that batch, so nothing is generated, stored or charged twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from contentforge.batch import (
    adopt_stored_image,
    moderate_piece,
    piece_id_for,
    store_piece,
)
from contentforge.config import Settings
from contentforge.db import PieceRow, PlannedPiece, RecordNotFound, Repository
from contentforge.domain import LoraSpec, Persona, PieceStatus, TemplateTier
from contentforge.errors import InvalidInput
from contentforge.images.batching import generate_timed
from contentforge.images.protocol import ImageBackend, ImageRequest
from contentforge.models.requests import variation_requests
from contentforge.moderation import Moderator
from contentforge.storage import Storage
from contentforge.validation import check_piece_id

BATCH_PREFIX = "var-"
PARENT_PARAM = "variations_of"
VARY_PARAM = "vary"
LABELS_PARAM = "variation_labels"
DERIVED_FROM = "derived_from"
VARIATION = "variation"
"""Keys of the generation record's ``extra``: the parent piece and what changed."""


@dataclass(frozen=True)
class VariationPlan:
    batch_id: str
    parent: PieceRow
    persona_id: str
    platform: str
    tier_mix: dict[str, float]
    seed: int
    piece_ids: list[str]
    labels: dict[str, str]
    """Piece id → what changed (``seed 12``, ``guidance 5.75``)."""


def variation_batch_id(parent_id: str, vary: str, count: int) -> str:
    """The variation batch of (parent, vary, count): the same request always names the same batch."""
    digest = hashlib.sha256(f"{parent_id}|{vary}|{count}".encode()).hexdigest()[:24]
    return BATCH_PREFIX + digest


def plan_variations(repo: Repository, parent_id: str, vary: str, count: int) -> VariationPlan:
    """Record the variation batch and its planned pieces (once); everything is checked before writing."""
    check_piece_id(parent_id)
    parent = repo.get_piece(parent_id)
    if parent is None:
        raise RecordNotFound(f"no piece with id {parent_id!r}")
    record = parent.record
    if record is None:
        raise InvalidInput(f"piece {parent_id} has no generation record yet (status {parent.status.value})")
    variations = variation_requests(record, vary, count)  # a bad --vary or -n is refused here
    platform = repo.platform_of_batch(parent.batch_id)
    if platform is None:
        raise RecordNotFound(f"piece {parent_id} names batch {parent.batch_id!r}, which does not exist")
    batch_id = variation_batch_id(parent.id, vary, count)
    piece_ids = [piece_id_for(batch_id, index) for index in range(len(variations))]
    labels = {pid: variation.label for pid, variation in zip(piece_ids, variations, strict=True)}
    tier_mix = {tier.value: 1.0 if tier.value == parent.template_tier else 0.0 for tier in TemplateTier}
    seed = record.seed % 2**32
    repo.create_batch(
        batch_id=batch_id,
        persona_id=parent.persona_id,
        platform=platform,
        num_pieces=len(variations),
        tier_mix=tier_mix,
        seed=seed,
        params={PARENT_PARAM: parent.id, VARY_PARAM: vary, LABELS_PARAM: labels},
        flow_run_id=None,
    )
    repo.add_planned_pieces(
        batch_id,
        [
            _planned(piece_id, index, parent, variation.request)
            for index, (piece_id, variation) in enumerate(zip(piece_ids, variations, strict=True))
        ],
    )
    for piece_id in piece_ids:
        _copy_hooks(repo, parent, piece_id)
    return VariationPlan(batch_id, parent, parent.persona_id, platform, tier_mix, seed, piece_ids, labels)


def _planned(piece_id: str, index: int, parent: PieceRow, request: ImageRequest) -> PlannedPiece:
    return PlannedPiece(
        piece_id=piece_id,
        index=index,
        template_id=parent.template_id,
        template_tier=parent.template_tier,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seed=request.seed,
        parent_piece_id=parent.id,
        steps=request.steps,
        guidance_scale=request.guidance_scale,
        width=request.width,
        height=request.height,
        loras=tuple(lora.model_dump(mode="json") for lora in request.loras),
        scheduler=request.scheduler,
    )


def _copy_hooks(repo: Repository, parent: PieceRow, piece_id: str) -> None:
    """The parent's hooks onto a variation that has none yet (a rerun never rewrites them)."""
    piece = repo.get_piece(piece_id)
    if piece is not None and not piece.hooks and parent.hooks:
        repo.save_hooks(piece_id, parent.hooks)


def planned_request(piece: PieceRow) -> ImageRequest:
    """The exact request a variation piece was planned with (its generation columns)."""
    if piece.steps is None or piece.guidance_scale is None or piece.width is None or piece.height is None:
        raise InvalidInput(f"piece {piece.id} was not planned as a variation")
    return ImageRequest(
        prompt=piece.prompt,
        negative_prompt=piece.negative_prompt,
        seed=piece.seed,
        steps=piece.steps,
        guidance_scale=piece.guidance_scale,
        width=piece.width,
        height=piece.height,
        loras=tuple(LoraSpec.model_validate(lora) for lora in piece.loras or ()),
        scheduler=piece.scheduler,
    )


def make_variations(
    plan: VariationPlan,
    persona: Persona,
    backend: ImageBackend,
    storage: Storage,
    repo: Repository,
    moderator: Moderator,
    settings: Settings,
) -> list[PieceRow]:
    """Generate, store and moderate the plan's pieces in this process; finished ones are kept as they are.

    The steps and their guarantees are the batch's own (``store_piece``: charged once per generation,
    identical bytes never stored twice; ``adopt_stored_image``: an image a crash stored but never
    recorded is adopted, not generated again).
    """
    done: list[PieceRow] = []
    for piece_id in plan.piece_ids:
        piece = _piece(repo, piece_id)
        if piece.status in (PieceStatus.planned, PieceStatus.failed) and not adopt_stored_image(
            piece, persona, storage, repo, settings
        ):
            timed = generate_timed(backend, planned_request(piece))
            extra = {DERIVED_FROM: plan.parent.id, VARIATION: plan.labels.get(piece_id, "")}
            record = timed.generated.record
            timed.generated.record = record.model_copy(update={"extra": {**record.extra, **extra}})
            store_piece(piece, persona, timed, storage, repo, datetime.now(UTC))
            piece = _piece(repo, piece_id)
        if piece.status is PieceStatus.generated:
            moderate_piece(piece, storage, moderator, repo)
            piece = _piece(repo, piece_id)
        done.append(piece)
    return done


def _piece(repo: Repository, piece_id: str) -> PieceRow:
    piece = repo.get_piece(piece_id)
    if piece is None:
        raise RecordNotFound(f"piece {piece_id} is not in the database")
    return piece
