"""Tasks that validate a request and plan the pieces of a batch (fast, no models)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from contentforge.analytics.feedback import record_template_feedback, template_weights
from contentforge.batch import (
    BatchRequest,
    plan_pieces,
    stored_piece_ids,
    template_by_id,
    validate_batch_request,
)
from contentforge.catalog import load_templates
from contentforge.db import PieceRow, PlannedPiece
from contentforge.db.analytics import AnalyticsStore
from contentforge.text.llm_prompts import ImagePromptOutcome, build_image_prompt_writer
from contentforge.text.prompt_sources import record_planned_prompts
from tasks import resources
from tasks.child_runs import cancel_child_runs


@task(cache_policy=NO_CACHE, persist_result=False)
def validate_request(**request: Any) -> BatchRequest:
    """Check every input before anything expensive; raises InvalidInput naming the problem."""
    return validate_batch_request(resources.repository(), resources.settings(), **request)


@task(cache_policy=NO_CACHE, persist_result=False)
def take_batch(
    request: BatchRequest, batch_id: str, flow_run_id: str | None, owner: str, wait_s: float = 0.0
) -> None:
    """Record the batch (once) and take its lease before planning: one runner per batch.

    Raises ``BatchBusy`` naming the live holder (after waiting up to ``wait_s`` for it), so a second
    runner never plans, generates or writes anything for a batch another one is running.
    """
    repo = resources.repository()
    repo.create_batch(
        batch_id=batch_id,
        persona_id=request.persona.id,
        platform=request.platform.value,
        num_pieces=request.num_pieces,
        tier_mix=request.tier_mix.model_dump(),
        seed=request.seed,
        params={
            "include_hooks": request.include_hooks,
            "safety_check": request.safety_check,
            "image_profile": resources.settings().image_profile,
        },
        flow_run_id=flow_run_id,
    )
    previous_run = repo.flow_run_of_batch(batch_id)
    repo.acquire_batch_lease(
        batch_id, owner, ttl_s=resources.settings().batch_lease_s, flow_run_id=flow_run_id, wait_s=wait_s
    )
    if flow_run_id is not None and previous_run not in (None, flow_run_id):
        # Taken over from a run whose lease expired: a GPU stage it started on another worker may still
        # be generating; cancel it so only this run writes the batch's pieces.
        cancel_child_runs(
            previous_run, f"batch {batch_id} was taken over by run {flow_run_id}", parent_dead=True
        )


@task(cache_policy=NO_CACHE, persist_result=False)
def select_templates_and_prompts(
    request: BatchRequest, batch_id: str, template_id: str | None = None
) -> list[str]:
    """Plan the batch's pieces (template, prompt, seed) and record them; returns the piece ids.

    ``template_id``: every piece uses that template (a request's ``generate_with_template``).

    Idempotent: rerunning a batch id keeps pieces already planned exactly as they were.
    """
    repo = resources.repository()
    # A model writes the prompts when the chain has one; a retried batch keeps its pieces, so it is
    # not paid for again. Sources and costs are recorded once the pieces exist (prompt_sources).
    writer = (
        None if repo.pieces(batch_id=batch_id, limit=1) else build_image_prompt_writer(resources.settings())
    )
    outcomes: dict[str, ImagePromptOutcome] = {}
    # What analytics learned for this persona and platform weights the template draw (none: no change).
    learned = template_weights(
        AnalyticsStore(repo.sessions),
        request.persona.id,
        request.platform.value,
        load_templates(),
        seed=request.seed,
    )

    def plan() -> list[PlannedPiece]:
        return plan_pieces(
            request,
            batch_id,
            [template_by_id(template_id)] if template_id else None,
            prompt_writer=writer,
            on_prompt=lambda piece, outcome: outcomes.__setitem__(piece.piece_id, outcome),
            weights=learned.weights,
        )

    planned = plan() if writer is None else resources.run_llm(plan)  # model calls hold an LLM slot
    repo.add_planned_pieces(batch_id, planned)
    record_planned_prompts(repo, batch_id, outcomes)
    # Only what was planned here: pieces planned before this run (variations of a piece, planned with
    # their parent's template) keep their template, so a template drawn now says nothing about them.
    stored = {row.id: row.template_id for row in repo.pieces(batch_id=batch_id)}
    drawn = [piece for piece in planned if stored.get(piece.piece_id) == piece.template_id]
    record_template_feedback(AnalyticsStore(repo.sessions), drawn, learned)
    # A resumed batch keeps the ids it was planned with (older ones used the batch id's first 16
    # characters), so its pieces are addressed by (batch, index) as stored.
    return stored_piece_ids(repo, batch_id, planned)


def load_piece(piece_id: str) -> PieceRow:
    piece = resources.repository().get_piece(piece_id)
    if piece is None:
        raise LookupError(f"piece {piece_id} is not in the database")
    return piece
