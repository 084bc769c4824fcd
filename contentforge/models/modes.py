"""AUTO and MANUAL for one generation: what the user set, or what the recommender and optimizer chose.

MANUAL (the default, as every batch before modes) uses exactly the request's values and the settings'
defaults for the rest, and adds nothing to the record, so its fingerprint is what it always was. AUTO
applies the recommended LoRAs (installed registry LoRAs of the model's family) and the optimizer's
parameters; anything the user set explicitly still wins. The explanation goes into the record's
``extra`` (``decision``, ``mode``), so the image's provenance says why it looks the way it does.
ASSISTED (a Prefect pause for approval) belongs to the flows and is not offered here.
"""

from __future__ import annotations

from dataclasses import dataclass

from contentforge.config import Settings
from contentforge.db.registry import ModelRegistry
from contentforge.db.sessions import SessionPolicy
from contentforge.domain import GenerationRecord, LoraSpec
from contentforge.errors import InvalidInput
from contentforge.images.protocol import ImageRequest
from contentforge.models.explain import DECISION_KEY, MODE_KEY, explain
from contentforge.models.recommender import LoraCandidate
from contentforge.models.requests import apply_params, checked_params

MODES: tuple[str, ...] = ("manual", "auto")


@dataclass(frozen=True)
class SinglePlan:
    mode: str
    request: ImageRequest
    explanation: str = ""


def registry_of(sessions: SessionPolicy) -> ModelRegistry:
    return ModelRegistry(sessions)


def configured_family(settings: Settings) -> str:
    """The configured model's family without loading it (tiny: from the setting)."""
    from contentforge.images.loras import _configured_family

    return _configured_family(settings) or "sdxl"


def plan_single(
    settings: Settings,
    prompt: str,
    *,
    mode: str,
    priority: str = "balanced",
    platform: str | None = None,
    registry: ModelRegistry | None = None,
    **values: object,
) -> SinglePlan:
    """The request for one image; every value checked before any model or embedding loads."""
    if mode not in MODES:
        raise InvalidInput(f"mode {mode!r}: use manual or auto (assisted runs in a batch flow)")
    family = configured_family(settings)
    params = checked_params(family, prompt=prompt, **values)
    base = ImageRequest(
        prompt=params.prompt or prompt,
        negative_prompt="",
        seed=0,
        steps=settings.image_steps,
        guidance_scale=settings.image_guidance,
        width=settings.image_width,
        height=settings.image_height,
    )
    if mode == "manual":
        return SinglePlan("manual", apply_params(base, params))
    from contentforge.models.embeddings import default_embedder
    from contentforge.models.optimizer import optimize, platform_aspect
    from contentforge.models.recommender import recommend

    aspect, aspect_reason = platform_aspect(platform)
    tiny = settings.image_profile == "tiny"
    choice = optimize(
        family,
        priority,
        aspect=aspect,
        aspect_reason=aspect_reason,
        feedback=registry.feedback("param") if registry is not None else None,
        # The tiny offline pipelines are made for small images and a few steps.
        pixels=settings.image_width * settings.image_height if tiny else None,
        steps_range=(2, 4, 8) if tiny else None,
    )
    candidates: list[LoraCandidate] = []
    feedback = None
    if registry is not None:
        candidates = [
            LoraCandidate(
                name=m.name,
                family=m.family,
                source=m.path,
                description=m.description,
                tags=m.tags,
                trigger_words=m.trigger_words,
                recommended_weight=m.recommended_weight or 0.8,
                rating=m.rating,
            )
            for m in registry.list_models(kind="lora", family=family)
        ]
        feedback = registry.feedback("lora")
    candidates += yaml_candidates(settings, family, {c.name for c in candidates})
    recommendation = recommend(
        prompt,
        candidates,
        family,
        default_embedder(),
        max_count=settings.lora_max_count,
        weight_cap=settings.lora_weight_cap,
        feedback=feedback,
    )
    loras = tuple(
        LoraSpec(source=s.candidate.source, weight_name=s.candidate.weight_name, scale=s.weight)
        for s in recommendation.chosen
    )
    triggers = [w for s in recommendation.chosen for w in s.candidate.trigger_words[:1] if w not in prompt]
    auto = base.model_copy(
        update={
            "prompt": ", ".join([*triggers, base.prompt]),
            "steps": choice.steps,
            "guidance_scale": choice.guidance_scale,
            "width": choice.width,
            "height": choice.height,
            "loras": loras,
        }
    )
    if registry is not None and recommendation.chosen:
        registry.touch([s.candidate.name for s in recommendation.chosen])
    explicit = params.model_copy(update={"prompt": None})  # the prompt now carries the trigger words
    return SinglePlan("auto", apply_params(auto, explicit), explain(recommendation, choice))


def yaml_candidates(settings: Settings, family: str, taken: set[str]) -> list[LoraCandidate]:
    """The YAML LoRA registry's entries (``CONTENTFORGE_IMAGE_LORA_REGISTRY``) of ``family``, read through.

    They have no description or tags, so only their name and trigger word are matched; a database
    registry LoRA of the same name wins.
    """
    if settings.image_lora_registry is None:
        return []
    from contentforge.images.loras import load_registry

    entries = load_registry(settings.image_lora_registry).entries
    return [
        LoraCandidate(
            name=name,
            family=entry.base_family,
            source=entry.source,
            weight_name=entry.weight_name,
            trigger_words=(entry.trigger_word,) if entry.trigger_word else (),
            recommended_weight=entry.default_scale,
        )
        for name, entry in sorted(entries.items())
        if entry.base_family == family and name not in taken
    ]


def with_decision(record: GenerationRecord, plan: SinglePlan) -> GenerationRecord:
    """The record with AUTO's explanation in ``extra``; MANUAL records are returned unchanged."""
    if plan.mode == "manual":
        return record
    extra = {**record.extra, MODE_KEY: plan.mode, DECISION_KEY: plan.explanation}
    return record.model_copy(update={"extra": extra})
