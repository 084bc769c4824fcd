"""Propose 6 persona candidates from a brand's DNA, let a supervisor pick 3-6 in the Prefect UI, save them.

The candidates are shown as an artifact and in the pause form's description; the flow pauses with
``pause_flow_run(wait_for_input=PersonaSelection)``: the Prefect UI shows a form with the
candidate ids to keep and optional edits (name, tone, niche, ...), and
``resume_flow_run(flow_run_id, run_input={...})`` does the same from code. When nobody answers
within the timeout (CONTENTFORGE_APPROVAL_TIMEOUT_S), the first CONTENTFORGE_PERSONA_DEFAULT_SELECTION
candidates are saved. Saved personas are linked to the brand.

    python flows/create_personas.py BRAND
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.input import RunInput
from pydantic import BaseModel, Field, ValidationError

from contentforge.domain.models import Platform
from contentforge.domain.strategy import PersonaCandidate
from flows.approval import wait_for_decision
from tasks import resources
from tasks.run_hooks import note_step_end
from tasks.strategy import propose_persona_candidates, save_personas, store

MIN_SELECTED, MAX_SELECTED = 3, 6


class PersonaEdit(BaseModel):
    """Changes to one candidate before it is saved; fields left empty stay as proposed."""

    id: str = Field(description="The candidate id to edit.")
    name: str | None = None
    niche: str | None = None
    appearance: str | None = None
    tone: str | None = None
    timezone: str | None = None
    interests: list[str] | None = None
    personality_traits: list[str] | None = None
    platforms: list[Platform] | None = None


class PersonaSelection(RunInput):
    """What the paused flow waits for: 3-6 candidate ids, and optional edits."""

    selected: list[str] = Field(description="Ids of the candidates to keep (3 to 6).")
    edits: list[PersonaEdit] = Field(default_factory=list)
    reviewer: str = Field(default="", description="Who chose (recorded in the flow's log).")


def candidates_markdown(brand: str, candidates: list[PersonaCandidate], default: list[str]) -> str:
    lines = [
        f"# Persona candidates for {brand}",
        "",
        f"Select {MIN_SELECTED}-{MAX_SELECTED} by id. Without an answer, these are saved: "
        + ", ".join(default),
        "",
        "| id | name | niche | appearance | personality | interests | tone | platforms | timezone |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in candidates:
        lines.append(
            f"| `{c.id}` | {c.name} | {c.niche} | {c.appearance} | {', '.join(c.personality_traits)} | "
            f"{', '.join(c.interests)} | {c.tone} | {', '.join(c.platforms)} | {c.timezone} |"
        )
    return "\n".join(lines)


def apply_selection(
    candidates: list[PersonaCandidate], selection: PersonaSelection, default: list[str]
) -> tuple[list[PersonaCandidate], list[str]]:
    """The chosen (and edited) candidates, and problems found; an unusable selection means the default."""
    by_id = {c.id: c for c in candidates}
    errors = [f"unknown candidate id {i!r}" for i in selection.selected if i not in by_id]
    chosen_ids = list(dict.fromkeys(i for i in selection.selected if i in by_id))
    if not MIN_SELECTED <= len(chosen_ids) <= MAX_SELECTED:
        errors.append(
            f"{len(chosen_ids)} valid candidate(s) selected, {MIN_SELECTED}-{MAX_SELECTED} are needed; "
            "the default selection is used"
        )
        chosen_ids = default
    edits = {e.id: e for e in selection.edits}
    chosen: list[PersonaCandidate] = []
    for cid in chosen_ids:
        candidate = by_id[cid]
        if (edit := edits.get(cid)) is not None:
            changes = edit.model_dump(exclude={"id"}, exclude_none=True)
            try:
                candidate = PersonaCandidate.model_validate({**candidate.model_dump(), **changes})
            except ValidationError as exc:
                first = exc.errors()[0]
                errors.append(
                    f"edit of {cid} not applied: {'.'.join(map(str, first['loc']))}: {first['msg']}"
                )
        chosen.append(candidate)
    return chosen, errors


@flow(name="create-personas", on_cancellation=[note_step_end], on_crashed=[note_step_end])
def create_personas(
    brand: str,
    count: int = 6,
    seed: int = 0,
    timeout_s: int | None = None,
    poll_interval_s: int = 10,
) -> dict[str, Any]:
    """Propose ``count`` candidates for ``brand``, wait for a selection, save the selected personas."""
    logger = get_run_logger()
    settings = resources.settings()
    brand_id, brand_name, _ = store().get_brand(brand)
    candidates = [
        PersonaCandidate.model_validate(c) for c in propose_persona_candidates(brand_id, count, seed)
    ]
    default = [c.id for c in candidates[: settings.persona_default_selection]]
    markdown = candidates_markdown(brand_name, candidates, default)
    create_markdown_artifact(markdown, key=f"personas-{brand_id[:40]}", description="Persona candidates")
    logger.info("brand %s: %d candidates proposed, waiting for a selection", brand_id, len(candidates))
    selection = wait_for_decision(
        PersonaSelection.with_initial_data(description=markdown, selected=default),
        key=f"personas-{brand_id}",
        timeout_s=timeout_s,
        poll_interval_s=poll_interval_s,
    )
    timed_out = selection is None
    if selection is None:
        logger.warning("brand %s: no selection in time; saving the default %s", brand_id, default)
        selection = PersonaSelection(selected=default)
    chosen, errors = apply_selection(candidates, selection, default)
    for problem in errors:
        logger.warning("brand %s: %s", brand_id, problem)
    saved = save_personas(brand_id, [c.model_dump(mode="json") for c in chosen])
    logger.info(
        "brand %s: saved personas %s%s",
        brand_id,
        saved,
        f" (by {selection.reviewer})" if selection.reviewer else "",
    )
    return {
        "brand_id": brand_id,
        "candidates": [c.id for c in candidates],
        "saved": saved,
        "timed_out": timed_out,
        "errors": errors,
    }


if __name__ == "__main__":
    print(create_personas(sys.argv[1]))
