"""The work of one persona batch as plain library calls; Prefect tasks wrap each step.

Validation happens first and completely (``validate_batch_request``), so bad input fails before
any model loads. Every later step reads and writes the database by piece id, which makes each step
safe to retry and a crashed batch resumable: finished pieces are skipped, a re-generated image with
the same record produces the same bytes, and storage never writes identical bytes twice.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image
from pydantic import ValidationError

from contentforge.catalog import load_templates, select_templates
from contentforge.config import Settings
from contentforge.db import PieceRow, PlannedPiece, Repository
from contentforge.domain import Persona, PieceStatus, Platform, Template, TierMix
from contentforge.errors import InvalidInput, UnknownPersona
from contentforge.images.factory import build_image_backend
from contentforge.images.loras import registry_name, resolve_persona_lora
from contentforge.images.protocol import GeneratedImage, ImageBackend, ImageRequest
from contentforge.images.provenance import png_with_provenance, sign_c2pa
from contentforge.moderation import Moderator
from contentforge.personas import load_persona_file
from contentforge.storage import Storage, content_key
from contentforge.text.hooks import HookWriter
from contentforge.text.llm_hooks import LlmHookWriter
from contentforge.text.llm_prompts import ImagePromptOutcome, LlmImagePromptWriter
from contentforge.text.prompts import build_image_prompt
from contentforge.text.providers.costs import record_text_cost

MAX_PIECES = 500
FINISHED = frozenset({PieceStatus.ready, PieceStatus.rejected})


@dataclass(frozen=True)
class BatchRequest:
    """A validated batch request: everything a run needs, checked before any expensive work."""

    persona: Persona
    num_pieces: int
    platform: Platform
    tier_mix: TierMix
    seed: int
    include_hooks: bool = True
    safety_check: bool = True


def validate_batch_request(
    repo: Repository,
    settings: Settings,
    *,
    persona: str,
    num_pieces: int,
    platform: str,
    tier_mix: TierMix | Mapping[str, float] | str | None,
    seed: int,
    include_hooks: bool = True,
    safety_check: bool = True,
) -> BatchRequest:
    """Check every input and return the request, or raise ``InvalidInput`` naming the problem."""
    if not isinstance(num_pieces, int) or not 1 <= num_pieces <= MAX_PIECES:
        raise InvalidInput(f"num_pieces must be between 1 and {MAX_PIECES}, got {num_pieces!r}")
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InvalidInput(f"seed must be an integer in [0, 2**32), got {seed!r}")
    try:
        chosen_platform = Platform(platform)
    except ValueError:
        raise InvalidInput(
            f"unknown platform {platform!r}; use one of {', '.join(p.value for p in Platform)}"
        ) from None
    mix = parse_tier_mix(tier_mix)
    found = resolve_persona(repo, persona)
    if chosen_platform not in found.platforms:
        targets = ", ".join(p.value for p in found.platforms)
        raise InvalidInput(
            f"persona {found.id!r} does not target {chosen_platform.value} (it targets {targets})"
        )
    if found.lora is not None:  # a file, a hub id or registry:<name> (must be registered and fit the model)
        resolve_persona_lora(found.lora, settings)
    # Builds the backend object only (the pipeline loads lazily): checks the model setting, refuses
    # pickle checkpoints, and fails here rather than after planning.
    build_image_backend(settings)
    return BatchRequest(found, num_pieces, chosen_platform, mix, seed, include_hooks, safety_check)


def parse_tier_mix(value: TierMix | Mapping[str, float] | str | None) -> TierMix:
    try:
        if value is None:
            return TierMix()
        if isinstance(value, TierMix):
            return value
        if isinstance(value, str):
            return TierMix.parse(value)
        return TierMix.model_validate(dict(value))
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"invalid tier mix: {_first_error(exc)}") from exc


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return str(exc)


def resolve_persona(repo: Repository, persona: str) -> Persona:
    """A persona by id or name, or from a YAML/JSON file path (which is then saved)."""
    path = Path(persona)
    if path.suffix.lower() in {".yaml", ".yml", ".json"}:
        loaded = load_persona_file(path)
        repo.upsert_persona(loaded)
        return loaded
    found = repo.get_persona(persona)
    if found is None:
        known = ", ".join(p.id for p in repo.list_personas()) or "none yet"
        raise UnknownPersona(f"unknown persona {persona!r} (known: {known})")
    return found


def piece_id_for(batch_id: str, index: int) -> str:
    """Deterministic, so a rerun of the same batch addresses the same pieces and storage keys."""
    return f"{batch_id[:16]}-{index:03d}"


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
) -> list[PlannedPiece]:
    """Pick templates for the tier mix and build each piece's prompt and seed.

    Without ``prompt_writer`` this is pure and fast (the rule-based ``build_image_prompt``). With one
    (``build_image_prompt_writer``), a model writes each prompt; the writer itself falls back to the
    rule-based prompt per piece on any provider error. ``on_prompt`` gets each planned piece with its
    outcome (``outcome.source`` is ``"llm"`` or ``"rules"``; ``outcome.result`` carries the cost).
    """
    library = list(templates) if templates is not None else load_templates()
    chosen = select_templates(
        library,
        niche=request.persona.niche,
        count=request.num_pieces,
        tier_mix=request.tier_mix,
        seed=request.seed,
    )
    planned = []
    for index, template in enumerate(chosen):
        outcome = prompt_writer.build(request.persona, template) if prompt_writer is not None else None
        prompt = outcome.prompt if outcome is not None else build_image_prompt(request.persona, template)
        piece = PlannedPiece(
            piece_id=piece_id_for(batch_id, index),
            index=index,
            template_id=template.id,
            template_tier=template.tier.value,
            prompt=prompt.prompt,
            negative_prompt=prompt.negative_prompt,
            seed=piece_seed(request.seed, index),
        )
        planned.append(piece)
        if outcome is not None and on_prompt is not None:
            on_prompt(piece, outcome)
    return planned


def image_request_for(piece: PieceRow, persona: Persona, settings: Settings) -> ImageRequest:
    """The request for a piece; a persona LoRA ``registry:<name>`` is resolved through the registry.

    The registry's trigger word replaces the one the prompt was planned with (the persona's own, or
    ``TOK_<id>``) at the start of the prompt, or goes first if the prompt does not have it.
    """
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


@dataclass(frozen=True)
class TimedImage:
    """A generated image with the wall-clock window in which the generation itself ran."""

    generated: GeneratedImage
    started_at: datetime
    finished_at: datetime
    seconds: float


@dataclass(frozen=True)
class GenerationOutcome:
    piece_id: str
    storage_key: str
    url: str
    seconds: float
    cost_usd: float
    written: bool


def generate_piece(
    piece: PieceRow, persona: Persona, backend: ImageBackend, settings: Settings
) -> TimedImage:
    """Only the generation: this is what runs inside a concurrency slot."""
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    generated = backend.generate(image_request_for(piece, persona, settings))
    seconds = time.perf_counter() - clock
    return TimedImage(generated, started_at, datetime.now(UTC), seconds)


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
    record = timed.generated.stored_record()  # with this run's load/denoise/decode timings
    png = png_with_provenance(timed.generated.image, record)
    if c2pa_credentials is not None:
        png = sign_c2pa(png, "image/png", *c2pa_credentials, title=f"ContentForge piece {piece.id}")
    stored = storage.put(
        content_key(persona.id, piece.id, "png"), png, "image/png", metadata=piece_metadata(piece)
    )
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
    )
    return GenerationOutcome(
        piece.id, stored.key, stored.url, timed.seconds, timed.generated.cost_usd, stored.written
    )


def write_piece_hooks(
    piece: PieceRow, persona: Persona, platform: Platform, writer: HookWriter, repo: Repository
) -> int:
    """Write and save the piece's hook variations; returns how many.

    An LLM writer's answer is charged to the batch's cost ledger (tokens, model, prompt version).
    """
    template = template_by_id(piece.template_id)
    if isinstance(writer, LlmHookWriter):
        outcome = writer.write_hooks_detailed(persona, template, platform, count=5, seed=piece.seed)
        hooks = outcome.hooks
        if outcome.result is not None and outcome.result.result.provider != "offline":
            record_text_cost(repo, piece.batch_id, outcome.result, piece_id=piece.id)
    else:
        hooks = writer.write_hooks(persona, template, platform, count=5, seed=piece.seed)
    repo.save_hooks(piece.id, hooks)
    return len(hooks)


def moderate_piece(piece: PieceRow, storage: Storage, moderator: Moderator, repo: Repository) -> str:
    """Moderate the stored image plus the prompt and hooks, and save the verdict; returns it.

    A borderline or disputed piece (``ModerationPolicy.assess``) is saved straight into
    ``needs_review``. A piece already waiting for a reviewer keeps its verdict and is not moderated
    again.
    """
    if piece.status is PieceStatus.needs_review and piece.verdict is not None:
        return piece.verdict.value
    if piece.storage_key is None:
        raise InvalidInput(f"piece {piece.id} has no stored image to moderate")
    image = Image.open(io.BytesIO(storage.get(piece.storage_key)))
    image.load()
    texts = [piece.prompt, *(hook.caption for hook in piece.hooks)]
    assessment = moderator.assess(image, texts)
    review_reasons = assessment.review_reasons if assessment.needs_review else ()
    repo.save_verdict(piece.id, assessment.verdict, review_reasons=review_reasons)
    return assessment.verdict.verdict.value


def template_by_id(template_id: str) -> Template:
    for template in load_templates():
        if template.id == template_id:
            return template
    raise InvalidInput(f"unknown template {template_id!r}")
