"""Tasks of a batch's AUTO and ASSISTED modes: recommend each piece's LoRAs and parameters, apply a
reviewer's edits, and save the plans on the pieces (``contentforge.db.piece_plans``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from contentforge.batch import BatchRequest, image_request_for
from contentforge.db.piece_plans import PiecePlans, PlannedGeneration
from contentforge.db.registry import ModelRegistry
from contentforge.domain import PieceStatus
from contentforge.models.modes import Advisor, PiecePlan, edited_plan
from contentforge.models.requests import GenerationParams
from contentforge.piece_requests import requested_image
from contentforge.text.providers.costs import record_text_cost
from tasks import resources


def advisor_for(request: BatchRequest) -> Advisor:
    """The batch's advisor: the installed LoRAs of the model's family, what feedback taught, the platform."""
    repo = resources.repository()
    return Advisor.build(
        resources.settings(),
        ModelRegistry(repo.sessions),
        platform=request.platform.value,
        model_analyzer=True,
    )


@task(cache_policy=NO_CACHE, persist_result=False)
def recommend_plans(
    request: BatchRequest, batch_id: str, piece_ids: list[str], prompt: str | None = None
) -> dict[str, PiecePlan]:
    """The recommendation for each piece still to generate that has no plan yet.

    ``prompt``: the user's own image prompt (``image_params``), which replaces every piece's planned
    one; it is what gets generated, so it is what the LoRAs and parameters are recommended for (the
    plans then carry it, with the chosen LoRAs' trigger words). A resumed batch keeps the plans it saved
    (and what they generated): only pieces without one are planned, so a rerun after the approval asks
    nothing again.
    """
    repo, settings = resources.repository(), resources.settings()
    wanted = set(piece_ids)
    todo = [
        piece
        for piece in repo.pieces(batch_id=batch_id)
        if piece.id in wanted and piece.status is PieceStatus.planned and piece.steps is None
    ]
    if not todo:
        return {}
    advisor = advisor_for(request)
    custom = GenerationParams(prompt=prompt)
    plans = {}
    for piece in todo:
        if prompt is None:
            plan = advisor.advise(image_request_for(piece, request.persona, settings), piece.prompt)
        else:  # the planned request with the user's prompt (and the persona's trigger word) in place
            plan = advisor.advise(requested_image(piece, request.persona, settings, custom), prompt)
        if plan.analysis_call is not None:  # a model read the prompt: a paid call, charged to the batch
            record_text_cost(
                repo,
                batch_id,
                plan.analysis_call,
                piece_id=piece.id,
                charge_key=f"prompt-analysis:{piece.id}:{uuid.uuid4().hex}",
            )
        plans[piece.id] = plan
    return plans


@task(cache_policy=NO_CACHE, persist_result=False)
def edit_plans(
    request: BatchRequest,
    plans: Mapping[str, PiecePlan],
    edits: Sequence[tuple[Sequence[str], list[tuple[str, float]] | None, dict[str, object]]],
) -> dict[str, PiecePlan]:
    """The plans with each edit applied to its pieces: (piece ids, LoRAs or None to keep, parameters).

    Raises ``InvalidInput`` (one line) for a value the model's family cannot take or an unknown LoRA.
    """
    advisor = advisor_for(request)
    edited = dict(plans)
    for piece_ids, loras, values in edits:
        for piece_id in piece_ids:
            plan = edited[piece_id]
            kept = list(zip(plan.lora_names, (lora.scale for lora in plan.request.loras), strict=True))
            edited[piece_id] = edited_plan(advisor, plan, kept if loras is None else loras, **values)
    return edited


@task(cache_policy=NO_CACHE, persist_result=False)
def save_plans(batch_id: str, mode: str, plans: Mapping[str, PiecePlan]) -> int:
    """Write the plans onto their still-planned pieces; returns how many were written."""
    generations = {
        piece_id: PlannedGeneration(
            prompt=plan.request.prompt,
            steps=plan.request.steps,
            guidance_scale=plan.request.guidance_scale,
            width=plan.request.width,
            height=plan.request.height,
            loras=tuple(lora.model_dump(mode="json") for lora in plan.request.loras),
            decision=plan.explanation,
        )
        for piece_id, plan in plans.items()
    }
    return PiecePlans(resources.repository().sessions).save(batch_id, mode, generations)
