"""The work of one persona batch as plain library calls; Prefect tasks wrap each step.

Validation happens first and completely (``validate_batch_request``), so bad input fails before
any model loads. Every later step reads and writes the database by piece id, which makes each step
safe to retry and a crashed batch resumable: finished pieces are skipped, a re-generated image with
the same record produces the same bytes, and storage never writes identical bytes twice.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict

from contentforge.analytics.feedback import order_hooks
from contentforge.batch_request import MAX_PIECES as MAX_PIECES
from contentforge.batch_request import BatchRequest as BatchRequest
from contentforge.batch_request import parse_tier_mix as parse_tier_mix
from contentforge.batch_request import piece_id_for as piece_id_for
from contentforge.batch_request import resolve_persona as resolve_persona
from contentforge.batch_request import validate_batch_request as validate_batch_request
from contentforge.catalog import load_templates, select_templates
from contentforge.config import Settings
from contentforge.db import PieceRow, PlannedPiece, Repository
from contentforge.db.analytics import AnalyticsStore
from contentforge.domain import HookStyle, LoraSpec, Persona, PieceStatus, Platform, Template
from contentforge.domain.binding import image_sha256, judged_hash, judged_texts
from contentforge.errors import ContentForgeError, InvalidInput
from contentforge.faults import fault_point
from contentforge.images.batching import TimedImage, generate_timed, generate_timed_group
from contentforge.images.loras import registry_name, resolve_persona_lora
from contentforge.images.protocol import ImageBackend, ImageRequest
from contentforge.images.provenance import png_with_provenance, read_provenance, sign_c2pa
from contentforge.moderation import Moderator
from contentforge.quality.batch_gate import gate_hooks, gate_image_prompt
from contentforge.storage import Storage, content_key
from contentforge.text.hooks import HookWriter, niche_hashtag
from contentforge.text.llm_hooks import LlmHookWriter
from contentforge.text.llm_prompts import ImagePromptOutcome, LlmImagePromptWriter
from contentforge.text.providers.costs import record_text_cost

FINISHED = frozenset({PieceStatus.ready, PieceStatus.rejected})
logger = logging.getLogger(__name__)


class ContentChanged(ContentForgeError):
    """A piece's image or texts changed while moderation judged it; the task retries with the new ones."""


def stored_piece_ids(repo: Repository, batch_id: str, planned: Sequence[PlannedPiece]) -> list[str]:
    """The ids the database holds for the planned (batch, index) pairs, in plan order."""
    by_index = {row.index: row.id for row in repo.pieces(batch_id=batch_id)}
    return [by_index.get(piece.index, piece.piece_id) for piece in planned]


def piece_seed(batch_seed: int, index: int) -> int:
    """Each piece's own seed, derived from the batch seed so a batch is reproducible as a whole."""
    digest = hashlib.sha256(f"{batch_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def plan_pieces(
    request: BatchRequest,
    batch_id: str,
    templates: Sequence[Template] | None = None,
    *,
    prompt_writer: LlmImagePromptWriter | None = None,
    on_prompt: Callable[[PlannedPiece, ImagePromptOutcome], None] | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[PlannedPiece]:
    """Pick templates for the tier mix and build each piece's prompt and seed.

    Without ``prompt_writer`` this is pure and fast (the rule-based ``build_image_prompt``). With one
    (``build_image_prompt_writer``), a model writes each prompt; the writer itself falls back to the
    rule-based prompt per piece on any provider error. ``on_prompt`` gets each planned piece with its
    outcome (``outcome.source`` is ``"llm"`` or ``"rules"``; ``outcome.result`` carries the cost).
    ``weights`` (template id → weight) come from what analytics learned
    (``analytics.feedback.template_weights``).
    """
    library = list(templates) if templates is not None else load_templates()
    chosen = select_templates(
        library,
        niche=request.persona.niche,
        count=request.num_pieces,
        tier_mix=request.tier_mix,
        seed=request.seed,
        weights=weights,
    )
    planned = []
    for index, template in enumerate(chosen):
        outcome = prompt_writer.build(request.persona, template) if prompt_writer is not None else None
        # The quality gate: a failing model prompt falls back to the rules; its verdict is stored.
        gated = gate_image_prompt(request.persona, template, outcome)
        prompt, outcome = gated.prompt, gated.outcome
        piece = PlannedPiece(
            piece_id=piece_id_for(batch_id, index),
            index=index,
            template_id=template.id,
            template_tier=template.tier.value,
            prompt=prompt.prompt,
            negative_prompt=prompt.negative_prompt,
            seed=piece_seed(request.seed, index),
            prompt_quality_gate=gated.verdict,
        )
        planned.append(piece)
        if outcome is not None and on_prompt is not None:
            on_prompt(piece, outcome)
    return planned


def image_request_for(piece: PieceRow, persona: Persona, settings: Settings) -> ImageRequest:
    """The request for a piece; a persona LoRA ``registry:<name>`` is resolved through the registry.

    The registry's trigger word replaces the one the prompt was planned with (the persona's own, or
    ``TOK_<id>``) at the start of the prompt, or goes first if the prompt does not have it. A piece an
    AUTO or ASSISTED batch planned (``db.piece_plans``) is generated with exactly its plan.
    """
    chosen = mode_planned_request(piece)
    if chosen is not None:
        return chosen
    prompt, lora = piece.prompt, persona.lora
    if lora is not None and registry_name(lora) is not None:
        lora = resolve_persona_lora(lora, settings)
        planned, trigger = persona.trigger_word, lora.trigger_word
        if trigger and planned and planned != trigger and prompt.startswith(planned):
            prompt = trigger + prompt[len(planned) :]
        elif trigger and trigger not in prompt:
            prompt = f"{trigger}, {prompt}"
    return ImageRequest(
        prompt=prompt,
        negative_prompt=piece.negative_prompt,
        seed=piece.seed,
        steps=settings.image_steps,
        guidance_scale=settings.image_guidance,
        width=settings.image_width,
        height=settings.image_height,
        loras=(lora,) if lora else (),
    )


def mode_planned_request(piece: PieceRow) -> ImageRequest | None:
    """The request an AUTO or ASSISTED batch chose for a piece not yet generated; None for MANUAL pieces
    (their generation columns stay NULL until the image is recorded)."""
    # getattr: callers that build a request from a bare prompt and seed (test doubles) have no plan.
    steps: int | None = getattr(piece, "steps", None)
    if steps is None or piece.generation_record is not None or piece.width is None:
        return None
    return ImageRequest(
        prompt=piece.prompt,
        negative_prompt=piece.negative_prompt,
        seed=piece.seed,
        steps=steps,
        guidance_scale=piece.guidance_scale or 0.0,
        width=piece.width,
        height=piece.height or piece.width,
        loras=tuple(LoraSpec.model_validate(lora) for lora in piece.loras or ()),
        scheduler=getattr(piece, "scheduler", None),  # a request's own (piece_requests, variations)
    )


@dataclass(frozen=True)
class GenerationOutcome:
    """One piece's image as ``store_piece`` stored and recorded it."""

    piece_id: str
    storage_key: str
    url: str
    seconds: float
    cost_usd: float
    written: bool


ERROR_MAX_CHARS = 2000
"""A failed piece's error as recorded on the piece and shown in its outcome."""


class PieceOutcome(BaseModel):
    """What the GPU stage did with one piece: generated (and stored), skipped (it already had its
    image: a resumed batch), or failed with ``error``. The ``generate-images`` flow returns one per
    piece; being a pydantic model, it shows as JSON in the Prefect UI."""

    model_config = ConfigDict(frozen=True)

    status: Literal["generated", "skipped", "failed"]
    error: str | None = None

    @classmethod
    def failure(cls, exc: BaseException) -> PieceOutcome:
        return cls(status="failed", error=f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS])


GENERATED = PieceOutcome(status="generated")
SKIPPED = PieceOutcome(status="skipped")


def generate_piece(
    piece: PieceRow, persona: Persona, backend: ImageBackend, settings: Settings
) -> TimedImage:
    """Only the generation of one image: this is what runs inside a concurrency slot."""
    return generate_timed(backend, image_request_for(piece, persona, settings))


def generate_piece_group(
    pieces: Sequence[PieceRow], personas: Mapping[str, Persona], backend: ImageBackend, settings: Settings
) -> list[TimedImage | Exception]:
    """Only the generation of one image group (pieces sharing a group key, ``images.batching``), in one
    pipeline call: what runs inside one slot. Per piece, its image or the exception it alone raised."""
    requests = [image_request_for(piece, personas[piece.persona_id], settings) for piece in pieces]
    return generate_timed_group(backend, requests)


def piece_metadata(piece: PieceRow) -> dict[str, str]:
    """What travels with the stored object (S3 user metadata); the backend adds the content sha256."""
    return {
        "persona": piece.persona_id,
        "piece": piece.id,
        "batch": piece.batch_id,
        "batch-index": str(piece.index),
        "template": piece.template_id,
        "template-tier": piece.template_tier,
        "digital-source-type": "trainedAlgorithmicMedia",
    }


def store_piece(
    piece: PieceRow,
    persona: Persona,
    timed: TimedImage,
    storage: Storage,
    repo: Repository,
    queued_at: datetime,
    *,
    c2pa_credentials: tuple[Path, Path] | None = None,
) -> GenerationOutcome:
    """Store the image with provenance right away, and record it.

    Stored before moderation so that a crash never loses a finished image; moderation then labels
    it, and rejected images are never published. Identical bytes are never written twice.
    ``c2pa_credentials`` (certificate chain, private key) add a signed C2PA manifest on top of the
    XMP provenance every image carries.
    """
    charge_generation(piece, timed, repo)  # paid for now, even if storing fails or the process dies
    record = timed.generated.stored_record()  # with this run's load/denoise/decode timings
    record = record.model_copy(update={"extra": {**record.extra, GENERATION_ID: timed.generation_id}})
    if mode_planned_request(piece) is not None:  # what AUTO or ASSISTED chose, and why, in one line
        record = record.model_copy(update={"extra": {**record.extra, **piece_decision(repo, piece)}})
    parent = getattr(piece, "parent_piece_id", None)
    if parent is not None:  # a variation (piece_variations): its provenance names the piece it varies
        record = record.model_copy(update={"extra": {**record.extra, "derived_from": parent}})
    png = png_with_provenance(timed.generated.image, record)
    if c2pa_credentials is not None:
        png = sign_c2pa(png, "image/png", *c2pa_credentials, title=f"ContentForge piece {piece.id}")
    stored = storage.put(
        content_key(persona.id, piece.id, "png"), png, "image/png", metadata=piece_metadata(piece)
    )
    fault_point("image-stored")  # test-only: kill -9 between storing and recording
    repo.mark_generated(
        piece.id,
        record=record,
        storage_key=stored.key,
        url=stored.url,
        content_sha256=stored.sha256,
        queued_at=queued_at,
        started_at=timed.started_at,
        finished_at=timed.finished_at,
        generation_seconds=timed.seconds,
        cost_usd=timed.generated.cost_usd,
        generation_id=timed.generation_id,
    )
    return GenerationOutcome(
        piece.id, stored.key, stored.url, timed.seconds, timed.generated.cost_usd, stored.written
    )


def piece_decision(repo: Repository, piece: PieceRow) -> dict[str, str]:
    """The record's ``mode`` and ``decision`` for a piece its batch's mode planned (``models.explain``);
    nothing for a piece planned with an exact request otherwise (a variation)."""
    from contentforge.db.piece_plans import PiecePlans
    from contentforge.models.explain import DECISION_KEY, MODE_KEY

    found = PiecePlans(repo.sessions).decision_of(piece.batch_id, piece.id)
    return {} if found is None else {MODE_KEY: found[0], DECISION_KEY: found[1]}


def charge_generation(piece: PieceRow, timed: TimedImage, repo: Repository) -> bool:
    """Charge one generation of the piece (keyed by its id: never twice); False if already charged."""
    generated = timed.generated
    return repo.charge_generation(
        piece.id,
        generation_id=timed.generation_id,
        provider=generated.record.backend,
        amount_usd=generated.cost_usd,
        detail={"model": generated.record.model, "fingerprint": generated.record.fingerprint()},
    )


def adopt_stored_image(
    piece: PieceRow, persona: Persona, storage: Storage, repo: Repository, settings: Settings
) -> bool:
    """Record an image a crashed run stored but never recorded, instead of generating it again.

    The stored file carries its generation record; it is adopted only when that record is exactly
    what this piece's request would generate now (prompt, seed, steps, guidance, size, LoRAs), so a
    changed configuration still regenerates. Its charge was made before it was stored, under the
    generation id the record carries, so adopting it charges nothing again.
    """
    key = content_key(persona.id, piece.id, "png")
    if piece.status is not PieceStatus.planned or not storage.exists(key):
        return False
    data = storage.get(key)
    record = read_provenance(data).record
    if record is None or GENERATION_ID not in record.extra:
        return False
    request = image_request_for(piece, persona, settings)
    wanted = request.generation_record(backend=record.backend, model=record.model)
    same = all(getattr(wanted, name) == getattr(record, name) for name in ADOPTION_FIELDS)
    # The LoRAs as the backends record them (source, file, scale); neither LoraSpec nor LoraRef has a name.
    wanted_loras = [(lora.source, lora.weight_name, lora.scale) for lora in request.loras]
    if not same or [(lora.source, lora.weight_name, lora.scale) for lora in record.loras] != wanted_loras:
        return False
    now = datetime.now(UTC)
    repo.mark_generated(
        piece.id,
        record=record,
        storage_key=key,
        url=storage.url_for(key),
        content_sha256=image_sha256(data),
        queued_at=now,
        started_at=now,
        finished_at=now,
        generation_seconds=0.0,
        cost_usd=float(record.extra.get("cost_usd") or 0.0),
        generation_id=record.extra[GENERATION_ID],
    )
    logger.info("piece %s: adopted the image a crashed run stored (not generated again)", piece.id)
    return True


GENERATION_ID = "generation_id"
ADOPTION_FIELDS = ("prompt", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height")


def write_piece_hooks(
    piece: PieceRow, persona: Persona, platform: Platform, writer: HookWriter, repo: Repository
) -> int:
    """Write and save the piece's hook variations; returns how many (0 when they already exist).

    A piece that already has hooks for ``platform`` keeps them: a resumed batch never rewrites (nor
    pays again for) finished hooks, because they may already be moderated and scheduled. An LLM
    writer's answer is charged to the batch's cost ledger (tokens, model, prompt version), keyed by
    the piece and platform so a retried recording is not charged twice.
    """
    if platform.value in repo.hook_platforms(piece.id):
        return 0
    template = template_by_id(piece.template_id)
    offline_styles: frozenset[HookStyle] = frozenset()
    if isinstance(writer, LlmHookWriter):
        outcome = writer.write_hooks_detailed(persona, template, platform, count=5, seed=piece.seed)
        hooks, offline_styles = outcome.hooks, frozenset(outcome.offline_styles)
        if outcome.result is not None and outcome.result.result.provider != "offline":
            record_text_cost(
                repo,
                piece.batch_id,
                outcome.result,
                piece_id=piece.id,
                charge_key=f"hooks:{piece.id}:{platform.value}:{uuid.uuid4().hex}",
            )
    else:
        hooks = writer.write_hooks(persona, template, platform, count=5, seed=piece.seed)
    # The quality gate: bait rewritten, failing hooks regenerated once, then offline or needs_review.
    gated = gate_hooks(
        hooks, persona, template, platform, writer, seed=piece.seed, offline_styles=offline_styles
    )
    hooks = gated.hooks
    if gated.regeneration is not None and gated.regeneration.result.provider != "offline":
        record_text_cost(  # the gate's one extra model call, charged under its own key
            repo,
            piece.batch_id,
            gated.regeneration,
            piece_id=piece.id,
            charge_key=f"hooks-regenerate:{piece.id}:{platform.value}:{uuid.uuid4().hex}",
        )
    # Best first by what analytics learned for this account (unchanged when nothing was learned).
    # The niche tag stays whatever the writer led with (a model's hooks need not share a first tag).
    niche = [tag for tag in (niche_hashtag(persona),) if tag]
    ranking = order_hooks(
        AnalyticsStore(repo.sessions), persona.id, platform.value, hooks, required_tags=niche
    )
    hooks = sorted(ranking.hooks, key=lambda hook: hook.held_by_quality_gate)  # held hooks never first
    if ranking.decision is not None:
        if hooks and hooks[0] is not ranking.hooks[0]:  # the learned favourite is held by the gate
            ranking.decision["publish_first"] = hooks[0].style.value
        AnalyticsStore(repo.sessions).record_feedback(piece.id, {f"hooks:{platform.value}": ranking.decision})
    repo.save_hooks(piece.id, hooks)
    fault_point("hooks-saved")  # test-only: kill -9 once the hooks are saved
    return len(hooks)


def moderate_piece(piece: PieceRow, storage: Storage, moderator: Moderator, repo: Repository) -> str:
    """Moderate the stored image plus the prompt and hooks, and save the verdict; returns it.

    A borderline or disputed piece (``ModerationPolicy.assess``) is saved straight into
    ``needs_review``. A piece already waiting for a reviewer keeps its verdict and is not moderated
    again.
    """
    if piece.status is PieceStatus.needs_review and piece.verdict is not None and piece.verdict_is_bound:
        return piece.verdict.value
    if piece.storage_key is None:
        raise InvalidInput(f"piece {piece.id} has no stored image to moderate")
    data = storage.get(piece.storage_key)
    image = Image.open(io.BytesIO(data))
    image.load()
    texts = judged_texts(piece.prompt, piece.hooks)
    assessment = moderator.assess(image, texts)
    review_reasons = assessment.review_reasons if assessment.needs_review else ()
    # Bound to exactly these bytes and texts: if the piece changed meanwhile, the verdict is not applied.
    bound = repo.save_verdict(
        piece.id,
        assessment.verdict,
        judged=judged_hash(image_sha256(data), texts),
        review_reasons=review_reasons,
    )
    if not bound:
        raise ContentChanged(f"piece {piece.id} changed while it was being moderated; moderate it again")
    fault_point("verdict-saved")  # test-only: kill -9 once the verdict is saved
    return assessment.verdict.verdict.value


def template_by_id(template_id: str) -> Template:
    for template in load_templates():
        if template.id == template_id:
            return template
    raise InvalidInput(f"unknown template {template_id!r}")
