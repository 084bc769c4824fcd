"""MANUAL, AUTO and ASSISTED: what the user set, or what the recommender and optimizer chose.

MANUAL (the default, as every batch before modes) uses exactly the request's values and the settings'
defaults for the rest, and adds nothing to the record, so its fingerprint is what it always was. AUTO
applies the recommended LoRAs (installed registry LoRAs of the model's family) and the optimizer's
parameters; anything the user set explicitly still wins. The explanation goes into the record's
``extra`` (``decision``, ``mode``), so the image's provenance says why it looks the way it does.

For a batch, ``Advisor`` is built once (candidates, feedback, the embedder) and advises each piece
(``advise``), keeping the persona's own LoRA. ASSISTED shows those plans to a person first: the
Prefect pause itself belongs to the flows; ``edited_plan`` here checks and applies what they changed
(``checked_params`` for the parameters, known LoRA names only), in one ``InvalidInput`` line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contentforge.config import Settings
from contentforge.db.registry import FeedbackScore, ModelRegistry
from contentforge.db.sessions import SessionPolicy
from contentforge.domain import GenerationRecord, LoraSpec
from contentforge.errors import InvalidInput
from contentforge.images.protocol import ImageRequest
from contentforge.models.explain import DECISION_KEY, MODE_KEY, explain
from contentforge.models.recommender import LoraCandidate
from contentforge.models.requests import apply_params, checked_for_settings, checked_params
from contentforge.text.providers.protocol import StructuredResult, TextProvider

MODES: tuple[str, ...] = ("manual", "auto")
BATCH_MODES: tuple[str, ...] = ("manual", "auto", "assisted")


@dataclass(frozen=True)
class SinglePlan:
    mode: str
    request: ImageRequest
    explanation: str = ""
    analysis_call: StructuredResult[Any] | None = None
    """The paid model call that read the prompt, if one did: the caller charges it."""


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
    model_analyzer: bool = False,
    **values: object,
) -> SinglePlan:
    """The request for one image; every value checked before any model or embedding loads.

    ``model_analyzer``: AUTO reads the prompt through the configured text chain, as batches do (the
    rules when no model is configured or it fails); the caller charges ``SinglePlan.analysis_call``."""
    if mode not in MODES:
        raise InvalidInput(f"mode {mode!r}: use manual or auto (assisted runs in a batch flow)")
    params = checked_for_settings(settings, prompt=prompt, **values)  # a scheduler only where it runs
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
    advisor = Advisor.build(
        settings, registry, priority=priority, platform=platform, model_analyzer=model_analyzer
    )
    auto = advisor.advise(base, prompt)
    explicit = params.model_copy(update={"prompt": None})  # the prompt now carries the trigger words
    return SinglePlan("auto", apply_params(auto.request, explicit), auto.explanation, auto.analysis_call)


def _text_chain(settings: Settings) -> TextProvider | None:
    """The configured text chain when it has a model in it; None when only the offline engine is named."""
    if all(name == "offline" for name in settings.text_provider_names):
        return None
    from contentforge.text.providers.factory import build_text_provider

    return build_text_provider(settings)


def check_batch_mode(mode: object) -> str:
    """The batch's mode, or one ``InvalidInput`` line before any work."""
    if mode not in BATCH_MODES:
        raise InvalidInput(f"mode {mode!r}: use manual, auto or assisted")
    return str(mode)


@dataclass(frozen=True)
class PiecePlan:
    """What AUTO (or an ASSISTED reviewer) chose for one piece, with the LoRAs' names for people."""

    request: ImageRequest
    explanation: str
    lora_names: tuple[str, ...] = ()
    """One per ``request.loras``: the registry name, or the file's name for a LoRA outside it."""
    analysis_call: StructuredResult[Any] | None = None
    """The paid model call that read the prompt, if one did: the caller charges it to the batch."""


@dataclass
class Advisor:
    """Recommends LoRAs and parameters for many prompts of one model family, built once per batch.

    Why a class: the candidates, the learned feedback and the sentence-embedding model are read once,
    not once per piece.
    """

    settings: Settings
    family: str
    candidates: list[LoraCandidate]
    registry: ModelRegistry | None
    priority: str = "balanced"
    platform: str | None = None
    lora_feedback: dict[str, FeedbackScore] | None = None
    param_feedback: dict[str, FeedbackScore] | None = None
    analyzer: TextProvider | None = None
    """The text chain that reads prompts when a model is configured; None: the rules alone."""
    _analyses: dict[str, Any] = field(default_factory=dict, repr=False)
    """Each prompt's analysis, read once: a batch's pieces often share their prompt (a custom prompt,
    the same template), and each model reading is a paid call (50 identical ones for a 50-piece batch)."""

    @classmethod
    def build(
        cls,
        settings: Settings,
        registry: ModelRegistry | None,
        *,
        priority: str = "balanced",
        platform: str | None = None,
        model_analyzer: bool = False,
    ) -> Advisor:
        """``model_analyzer``: read prompts through the configured text chain (a caller that charges
        ``PiecePlan.analysis_call`` to its batch asks for it); the rules otherwise."""
        family = configured_family(settings)
        candidates: list[LoraCandidate] = []
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
        candidates += yaml_candidates(settings, family, {c.name for c in candidates})
        return cls(
            settings,
            family,
            candidates,
            registry,
            priority,
            platform,
            registry.feedback("lora") if registry is not None else None,
            registry.feedback("param") if registry is not None else None,
            _text_chain(settings) if model_analyzer else None,
        )

    def advise(self, base: ImageRequest, prompt: str) -> PiecePlan:
        """``base`` with the recommended LoRAs (its own first LoRA, the persona's, kept) and parameters.

        ``prompt`` is what is analysed (the piece's prompt, without the persona's trigger word).
        """
        from contentforge.models.embeddings import default_embedder
        from contentforge.models.optimizer import optimize, platform_aspect
        from contentforge.models.recommender import recommend

        settings = self.settings
        aspect, aspect_reason = platform_aspect(self.platform)
        tiny = settings.image_profile == "tiny"
        choice = optimize(
            self.family,
            self.priority,
            aspect=aspect,
            aspect_reason=aspect_reason,
            feedback=self.param_feedback,
            # The tiny offline pipelines are made for small images and a few steps.
            pixels=settings.image_width * settings.image_height if tiny else None,
            steps_range=(2, 4, 8) if tiny else None,
        )
        own = base.loras[0] if base.loras else None
        own_candidate = None
        if own is not None:
            own_candidate = LoraCandidate(
                name=self._name_of(own.source),
                family=self.family,
                source=own.source,
                weight_name=own.weight_name,
                recommended_weight=own.scale,
            )
        analysis, analysis_call = None, None
        if self.analyzer is not None:
            from contentforge.models.model_analyzer import analyze_with

            if prompt in self._analyses:  # read before: the same analysis, no second (paid) call
                analysis = self._analyses[prompt]
            else:
                analysis, analysis_call = analyze_with(self.analyzer, prompt)
                self._analyses[prompt] = analysis
        recommendation = recommend(
            prompt,
            self.candidates,
            self.family,
            default_embedder(),
            max_count=self.settings.lora_max_count,
            weight_cap=self.settings.lora_weight_cap,
            feedback=self.lora_feedback,
            persona_lora=own_candidate,
            persona_weight=own.scale if own is not None else None,
            analysis=analysis,
        )
        loras = tuple(
            own.model_copy(update={"scale": s.weight})
            if s.kept and own is not None
            else LoraSpec(source=s.candidate.source, weight_name=s.candidate.weight_name, scale=s.weight)
            for s in recommendation.chosen
        )
        triggers = [
            w
            for s in recommendation.chosen
            if not s.kept
            for w in s.candidate.trigger_words[:1]
            if w not in base.prompt
        ]
        request = base.model_copy(
            update={
                "prompt": ", ".join([*triggers, base.prompt]),
                "steps": choice.steps,
                "guidance_scale": choice.guidance_scale,
                "width": choice.width,
                "height": choice.height,
                "loras": loras,
            }
        )
        if self.registry is not None and recommendation.chosen:
            self.registry.touch([s.candidate.name for s in recommendation.chosen if not s.kept])
        names = tuple(s.candidate.name for s in recommendation.chosen)
        return PiecePlan(request, explain(recommendation, choice), names, analysis_call)

    def _name_of(self, source: str) -> str:
        for candidate in self.candidates:
            if candidate.source == source:
                return candidate.name
        return source.rsplit("/", 1)[-1].removesuffix(".safetensors")

    def lora_named(self, name: str, scale: float, plan: PiecePlan) -> LoraSpec:
        """The LoRA a reviewer names: one of the plan's own, or an installed one of the model's family."""
        for known, spec in zip(plan.lora_names, plan.request.loras, strict=True):
            if known == name:
                return spec.model_copy(update={"scale": scale})
        for candidate in self.candidates:
            if candidate.name == name:
                return LoraSpec(source=candidate.source, weight_name=candidate.weight_name, scale=scale)
        known_names = sorted({*plan.lora_names, *(c.name for c in self.candidates)})
        raise InvalidInput(
            f"LoRA {name!r} is not installed for {self.family} (known: {', '.join(known_names) or 'none'})"
        )


def edited_plan(
    advisor: Advisor, plan: PiecePlan, loras: list[tuple[str, float]], **values: object
) -> PiecePlan:
    """``plan`` with a reviewer's edit: LoRAs (name, weight) and parameters, checked before any work.

    A changed value is checked by ``checked_params`` for the model's family and a LoRA must be known
    (one the plan had, or an installed LoRA of the family); anything wrong is one ``InvalidInput`` line.
    A LoRA added by name brings its trigger word into the prompt, as AUTO does.
    """
    params = checked_params(advisor.family, **values)
    specs = []
    for name, weight in loras:
        if not -4.0 <= weight <= 4.0:
            raise InvalidInput(f"LoRA {name!r} weight {weight:g}: use -4 to 4")
        specs.append(advisor.lora_named(name, weight, plan))
    prompt = plan.request.prompt
    for name, _ in loras:
        if name in plan.lora_names:
            continue
        triggers = [c.trigger_words[0] for c in advisor.candidates if c.name == name and c.trigger_words]
        if triggers and triggers[0] not in prompt:
            prompt = f"{triggers[0]}, {prompt}"
    request = apply_params(plan.request.model_copy(update={"loras": tuple(specs), "prompt": prompt}), params)
    if request == plan.request:
        return plan
    changed = _changes(plan, request, [name for name, _ in loras])
    line = f"edited by a reviewer ({changed}); recommended: {plan.explanation}"
    return PiecePlan(request, line, tuple(name for name, _ in loras))


def _changes(plan: PiecePlan, request: ImageRequest, names: list[str]) -> str:
    before, parts = plan.request, []
    if [(n, s.scale) for n, s in zip(plan.lora_names, before.loras, strict=True)] != [
        (n, s.scale) for n, s in zip(names, request.loras, strict=True)
    ]:
        shown = ", ".join(f"{n} {s.scale:.2f}" for n, s in zip(names, request.loras, strict=True))
        parts.append(f"LoRAs {shown or 'none'}")
    for field_name, label in (
        ("steps", "steps"),
        ("guidance_scale", "guidance"),
        ("width", "width"),
        ("height", "height"),
    ):
        if getattr(before, field_name) != getattr(request, field_name):
            parts.append(f"{label} {getattr(request, field_name):g}")
    return ", ".join(parts) or "prompt"


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
