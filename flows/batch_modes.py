"""A batch's AUTO and ASSISTED modes, run by ``produce-content-batch`` between planning and generation.

AUTO saves the recommendation of each piece (``tasks/mode_plans.py``). ASSISTED first pauses the run
with ``pause_flow_run(wait_for_input=PlanApproval)``: the form's description is a table of the
recommended LoRAs, weights and parameters per template group (pieces of one template share their
scene), and the answer (in the Prefect UI or ``POST /api/v1/jobs/{id}/input``) accepts them as they
are or edits a group. What the answer sets is what gets generated.

A bad edit: the form's schema refuses what it can say (steps 1-150, guidance 0-30, sizes multiples of
8 within 64-2048, weights -4..4), so Prefect refuses the answer and the run stays paused; what only
the model's family or the registry can judge (an unknown template or LoRA, a size the family cannot
take) pauses the run again with the error first in the description, so it stays resumable with a
corrected answer. Nobody answering within ``CONTENTFORGE_APPROVAL_TIMEOUT_S`` fails the batch in one
line; nothing was generated, and a resume with its batch id asks again.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from prefect import get_run_logger
from prefect.input import RunInput
from pydantic import BaseModel, Field

from contentforge.batch import BatchRequest
from contentforge.errors import ContentForgeError, InvalidInput
from contentforge.models.modes import PiecePlan
from flows.approval import wait_for_decision
from tasks import resources
from tasks.mode_plans import edit_plans, recommend_plans, save_plans

EDIT_ATTEMPTS = 5
"""How often a run pauses again after an answer it could not use, before it fails."""
POLL_INTERVAL_S = 2


class LoraWeight(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="A LoRA of the table, or an installed one.")
    weight: float = Field(ge=-4.0, le=4.0)


class GroupEdit(BaseModel):
    """Changes for every piece of one template; fields left empty keep each piece's recommendation."""

    template: str = Field(min_length=1, max_length=64, description="A template id of the table.")
    loras: list[LoraWeight] | None = Field(
        default=None, description="The LoRAs to use instead (an empty list: none)."
    )
    steps: int | None = Field(default=None, ge=1, le=150)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=30.0)
    width: int | None = Field(default=None, ge=64, le=2048, multiple_of=8)
    height: int | None = Field(default=None, ge=64, le=2048, multiple_of=8)


class PlanApproval(RunInput):
    """Submit as it is to generate the recommendation; add an edit per template group to change it."""

    edits: list[GroupEdit] = Field(default_factory=list)
    reviewer: str = Field(default="", max_length=200, description="Who approved (in the flow's log).")


class PlanTimedOut(ContentForgeError):
    """Nobody approved an ASSISTED batch's plan in time; nothing was generated."""


def plan_by_mode(
    request: BatchRequest, batch_id: str, piece_ids: list[str], prompt: str | None = None
) -> None:
    """Save what AUTO chose for each piece, or (ASSISTED) what a person approved or edited.

    ``prompt``: the request's own image prompt, recommended for instead of the templates' (it is what
    will be generated); the saved plans carry it."""
    logger = get_run_logger()
    plans = recommend_plans(request, batch_id, piece_ids, prompt)
    if not plans:  # MANUAL never gets here; a resumed batch keeps the plans it saved
        return
    if request.mode == "assisted":
        plans = approved_plans(request, batch_id, plans)
    saved = save_plans(batch_id, request.mode, plans)
    logger.info("batch %s: %s plans saved for %d piece(s)", batch_id, request.mode, saved)


def approved_plans(request: BatchRequest, batch_id: str, plans: dict[str, PiecePlan]) -> dict[str, PiecePlan]:
    """Pause for the reviewer's answer and apply it; paused again (with the reason) when it is unusable."""
    logger = get_run_logger()
    groups = template_groups(batch_id, plans)
    problem = ""
    timeout_s = resources.settings().approval_timeout_s
    for attempt in range(1, EDIT_ATTEMPTS + 1):
        description = plan_markdown(batch_id, groups, plans, problem)
        answer = wait_for_decision(
            PlanApproval.with_initial_data(description=description),
            key=f"batch-plan-{attempt}",
            timeout_s=timeout_s,
            poll_interval_s=POLL_INTERVAL_S,
        )
        if answer is None:
            raise PlanTimedOut(
                f"batch {batch_id}: nobody approved its plan within {timeout_s} s; nothing was generated "
                f"(resume it with batch id {batch_id} to be asked again)"
            )
        try:
            edited = edit_plans(request, plans, group_edits(answer, groups))
        except InvalidInput as exc:
            problem = str(exc)
            logger.warning("batch %s: the plan's answer was refused: %s; asking again", batch_id, problem)
            continue
        who = f" by {answer.reviewer}" if answer.reviewer else ""
        logger.info("batch %s: plan approved%s with %d edit(s)", batch_id, who, len(answer.edits))
        return edited
    raise InvalidInput(
        f"batch {batch_id}: the plan's answer was refused {EDIT_ATTEMPTS} times; last: {problem}"
    )


def template_groups(batch_id: str, plans: dict[str, PiecePlan]) -> dict[str, list[str]]:
    """Template id → its pieces to plan, in plan order."""
    groups: dict[str, list[str]] = defaultdict(list)
    for piece in resources.repository().pieces(batch_id=batch_id):
        if piece.id in plans:
            groups[piece.template_id].append(piece.id)
    return dict(groups)


def group_edits(
    answer: PlanApproval, groups: dict[str, list[str]]
) -> list[tuple[list[str], list[tuple[str, float]] | None, dict[str, Any]]]:
    """Each edit as (its pieces, its LoRAs or None, its parameters); an unknown template is refused."""
    out = []
    for edit in answer.edits:
        if edit.template not in groups:
            raise InvalidInput(
                f"template {edit.template!r} is not in this batch's plan (its templates: {', '.join(groups)})"
            )
        loras = None if edit.loras is None else [(lora.name, lora.weight) for lora in edit.loras]
        values = {
            "steps": edit.steps,
            "guidance_scale": edit.guidance_scale,
            "width": edit.width,
            "height": edit.height,
        }
        out.append((groups[edit.template], loras, values))
    return out


MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def markdown_literal(text: str) -> str:
    """``text`` shown as typed in the Prefect UI's Markdown: an answer's own words (a template id, a LoRA
    name) must not turn into links, emphasis or table cells in the form the next reviewer reads."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", " ".join(text.split()))


def plan_markdown(
    batch_id: str, groups: dict[str, list[str]], plans: dict[str, PiecePlan], problem: str
) -> str:
    """The form's description: the recommendation per template group, and why the last answer failed."""
    lines = []
    if problem:
        lines += [f"**The last answer could not be used:** {markdown_literal(problem)}. Answer again.", ""]
    lines += [
        f"# Recommended plan for batch {batch_id}",
        "",
        "Submit to generate this. To change a group, add an edit with its template id; fields left empty "
        "keep the recommendation.",
        "",
        "| template | pieces | LoRAs (weight) | steps | guidance | size | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for template, piece_ids in groups.items():
        plan = plans[piece_ids[0]]
        request = plan.request
        loras = ", ".join(
            f"{name} {lora.scale:.2f}" for name, lora in zip(plan.lora_names, request.loras, strict=True)
        )
        lines.append(
            f"| `{template}` | {len(piece_ids)} | {loras or 'none'} | {request.steps} | "
            f"{request.guidance_scale:g} | {request.width}x{request.height} | {plan.explanation} |"
        )
    return "\n".join(lines)
