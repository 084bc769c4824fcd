"""Detailed, persona-aware image prompts from a language model, with the rule-based prompt as fallback.

The rule-based ``build_image_prompt`` runs first: it checks the persona and template against the
content policy before any model is paid. A model then writes a 100-200 word prompt (prompt
``image_prompt.v<N>``); the result is held to the same rules as the rule-based one: the LoRA
trigger word first, no policy-breaking words, and the fixed safety negatives (plus any extra
negative terms the model suggests). Any failure, or no reachable model, falls back to the
rule-based prompt, and the outcome says which one was used and why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from contentforge.catalog import explicit_terms_in
from contentforge.config import Settings
from contentforge.domain.models import Persona, Template, TemplateTier
from contentforge.errors import ContentForgeError, InvalidInput
from contentforge.text.prompt_library import PromptTemplate, load_prompt
from contentforge.text.prompts import ImagePrompt, build_image_prompt
from contentforge.text.providers.factory import build_text_provider
from contentforge.text.providers.offline import OfflineEngine
from contentforge.text.providers.protocol import StructuredResult, TextProvider
from contentforge.text.providers.schemas import ImagePromptDraft

log = logging.getLogger(__name__)

_NEGATIVE_TERM_RE = re.compile(r"^[\w][\w '\-]{0,40}$")
_MAX_EXTRA_NEGATIVES = 12


@dataclass(frozen=True)
class ImagePromptOutcome:
    """The prompt to generate with, and where it came from."""

    prompt: ImagePrompt
    source: str
    """``"llm"`` or ``"rules"``."""
    prompt_version: str | None = None
    result: StructuredResult[ImagePromptDraft] | None = None
    fallback_reason: str | None = None


def _extra_negatives(terms: list[str], existing: str) -> list[str]:
    have = {t.strip().lower() for t in existing.split(",")}
    extra: list[str] = []
    for term in terms:
        term = " ".join(term.split()).strip(" ,.")
        if term and _NEGATIVE_TERM_RE.match(term) and term.lower() not in have:
            have.add(term.lower())
            extra.append(term)
    return extra[:_MAX_EXTRA_NEGATIVES]


class LlmImagePromptWriter:
    """Writes image prompts through a ``TextProvider``; ``build_image_prompt`` is the fallback."""

    def __init__(
        self,
        provider: TextProvider,
        *,
        prompt: PromptTemplate | None = None,
        temperature: float = 0.7,
        max_tokens: int = 800,
        on_result: Callable[[StructuredResult[ImagePromptDraft]], None] | None = None,
    ) -> None:
        self.provider = provider
        self.prompt = prompt or load_prompt("image_prompt")
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.on_result = on_result

    def render_prompt(self, persona: Persona, template: Template) -> tuple[str, str]:
        trigger = persona.trigger_word
        return self.prompt.render(
            name=persona.name,
            trigger=trigger or persona.name,
            trigger_note=" (it is the LoRA trigger word of the persona)" if trigger else "",
            appearance=" ".join(persona.appearance.split()),
            niche=persona.niche,
            traits=", ".join(persona.personality_traits),
            interests=", ".join(persona.interests),
            template_id=template.id,
            category=template.category,
            tier_note=(
                "; styling: tasteful, elegant, fully styled outfit, fashion editorial"
                if template.tier == TemplateTier.suggestive
                else ""
            ),
            scene=" ".join(template.prompt.split()),
            pose=template.pose,
            lighting=template.lighting,
            camera=template.camera_angle,
            tags=", ".join(template.tags) or "none",
        )

    def build(self, persona: Persona, template: Template) -> ImagePromptOutcome:
        rules_prompt = build_image_prompt(persona, template)  # policy check before any paid call
        system, user = self.render_prompt(persona, template)
        try:
            answer = self.provider.generate_structured(
                user,
                ImagePromptDraft,
                system=system,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                prompt_version=self.prompt.id,
                context={"persona": persona, "template": template},
            )
        except ContentForgeError as exc:
            if isinstance(exc, InvalidInput):
                raise
            log.warning(
                "no model wrote the image prompt for template %s (%s); using the rule-based prompt",
                template.id,
                exc,
            )
            return ImagePromptOutcome(prompt=rules_prompt, source="rules", fallback_reason=str(exc))
        if self.on_result is not None:
            self.on_result(answer)
        text = answer.value.prompt.strip().strip('"').strip()
        trigger = persona.trigger_word
        if trigger and not text.startswith(trigger):
            text = f"{trigger}, {text}"
        if terms := explicit_terms_in(text):
            reason = f"model prompt contains words the content policy forbids ({', '.join(terms)})"
            log.warning("%s for template %s; using the rule-based prompt", reason, template.id)
            return ImagePromptOutcome(
                prompt=rules_prompt,
                source="rules",
                prompt_version=self.prompt.id,
                result=answer,
                fallback_reason=reason,
            )
        negatives = rules_prompt.negative_prompt
        extra = _extra_negatives(answer.value.negative_terms, negatives)
        negative_prompt = ", ".join([negatives, *extra])
        return ImagePromptOutcome(
            prompt=ImagePrompt(prompt=text, negative_prompt=negative_prompt),
            source="llm",
            prompt_version=answer.prompt_version,
            result=answer,
        )


def build_image_prompt_writer(
    settings: Settings,
    *,
    on_result: Callable[[StructuredResult[ImagePromptDraft]], None] | None = None,
) -> LlmImagePromptWriter | None:
    """A model-backed writer, or ``None`` when only the offline engine can run (then use the rules)."""
    if settings.text_provider_names == ["offline"]:
        return None
    chain = build_text_provider(settings)
    if all(isinstance(p, OfflineEngine) for p in chain.providers):
        return None
    return LlmImagePromptWriter(chain, on_result=on_result)
