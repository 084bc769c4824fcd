"""One request's own choices for its pieces: a template, or a custom prompt, and generation parameters.

The brief's ``generate_with_template`` and ``custom_prompt``: ``POST /content/generate`` and
``contentforge produce`` may name a template (every piece uses it) or write the image prompt
themselves, and set steps, guidance, size, scheduler and negative prompt. ``check_piece_request``
refuses what the configured model family cannot do, an unknown template, or a prompt the content
policy forbids, in one line, before a server starts or a model loads. After planning,
``apply_piece_request`` writes each planned piece's exact request into its row (prompt, negative
prompt, and the generation columns), so every later step (grouping, generation, adopting an image a
crash stored) builds the same request from the row, on any worker.

A custom prompt starts with the persona's trigger word (so its LoRA still draws the persona), and the
safety negatives stay in every SD negative prompt: a request adds to them, never removes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from contentforge.batch import image_request_for, template_by_id
from contentforge.catalog import explicit_terms_in
from contentforge.config import Settings
from contentforge.db import PieceRow, Repository
from contentforge.domain import Persona, PieceStatus
from contentforge.errors import InvalidInput
from contentforge.images.protocol import ImageRequest
from contentforge.models.requests import GenerationParams, apply_params, checked_for_settings
from contentforge.text.prompts import SAFETY_NEGATIVES

TEMPLATE_PARAM = "template_id"
PARAMS_PARAM = "image_params"
"""The batch flow's parameter names for a piece request (absent: the batch plans as it always did)."""


@dataclass(frozen=True)
class PieceRequest:
    template_id: str | None = None
    params: GenerationParams = field(default_factory=GenerationParams)

    @property
    def empty(self) -> bool:
        return self.template_id is None and not self.params.model_dump(exclude_none=True)

    def flow_parameters(self) -> dict[str, Any]:
        """Only what was set, so a request without any adds no parameter to the flow run."""
        out: dict[str, Any] = {}
        if self.template_id is not None:
            out[TEMPLATE_PARAM] = self.template_id
        values = self.params.model_dump(exclude_none=True)
        if values:
            out[PARAMS_PARAM] = values
        return out


def check_piece_request(settings: Settings, template_id: str | None = None, **values: object) -> PieceRequest:
    """The request, or one ``InvalidInput`` line naming the first thing that cannot be done."""
    if template_id is not None:
        template_by_id(template_id)  # an unknown id: one line naming it
    params = checked_for_settings(settings, **values)
    if params.prompt is not None and (terms := explicit_terms_in(params.prompt)):
        raise InvalidInput(f"prompt: contains words the content policy forbids ({', '.join(terms)})")
    return PieceRequest(template_id, params)


def requested_tier_mix(template_id: str | None) -> dict[str, float] | None:
    """With a template, every piece is of its tier; None leaves the batch's own mix."""
    if template_id is None:
        return None
    tier = template_by_id(template_id).tier.value
    return {"safe": 1.0 if tier == "safe" else 0.0, "suggestive": 1.0 if tier == "suggestive" else 0.0}


def apply_piece_request(
    repo: Repository, settings: Settings, persona: Persona, piece_ids: list[str], request: PieceRequest
) -> int:
    """Write the request into each still-planned piece of ``piece_ids``; returns how many were written.

    A piece with an image (or one that failed after generating) keeps what it has: a resumed batch never
    changes what was generated.
    """
    if request.empty:
        return 0
    written = 0
    for piece_id in piece_ids:
        piece = repo.get_piece(piece_id)
        if piece is None or piece.status is not PieceStatus.planned or piece.generation_record is not None:
            continue
        wanted = requested_image(piece, persona, settings, request.params)
        written += repo.set_planned_request(
            piece_id,
            prompt=wanted.prompt,
            negative_prompt=wanted.negative_prompt,
            steps=wanted.steps,
            guidance_scale=wanted.guidance_scale,
            width=wanted.width,
            height=wanted.height,
            loras=[lora.model_dump(mode="json") for lora in wanted.loras],
            scheduler=wanted.scheduler,
        )
    return written


def requested_image(
    piece: PieceRow, persona: Persona, settings: Settings, params: GenerationParams
) -> ImageRequest:
    """The piece's request with the user's prompt and parameters in place of the planned ones."""
    planned = piece
    if params.prompt is not None:
        trigger = persona.trigger_word
        prompt = params.prompt if not trigger or trigger in params.prompt else f"{trigger}, {params.prompt}"
        planned = replace(planned, prompt=prompt)
    base = image_request_for(planned, persona, settings)
    explicit = params.model_copy(update={"prompt": None, "negative_prompt": None})
    chosen = apply_params(base, explicit)
    if params.negative_prompt is not None:  # never for Flux: checked_params refuses one
        chosen = chosen.model_copy(update={"negative_prompt": _with_safety(params.negative_prompt)})
    return chosen


def _with_safety(negative: str) -> str:
    negative = negative.strip().rstrip(",")
    return f"{negative}, {SAFETY_NEGATIVES}" if negative else SAFETY_NEGATIVES
