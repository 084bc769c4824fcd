"""The prompt analyzer through the configured text chain: a model's structured reading of a prompt.

Why next to the rule-based analyzer (``analyzer.analyze``): rules only find the words they list, so a
paraphrase ("shot on expired Portra, heavy grain") finds nothing for the recommender to match, while a
language model names the style it implies. The chain ends in the offline engine, which answers this
schema from the request context: the rules' own analysis is that context, so with no model configured,
or a model that fails, the answer is exactly the rules' (and says so). The recommender then matches the
LoRAs against the prompt, its chunks and every phrase the analysis named.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from contentforge.errors import ContentForgeError
from contentforge.models.analyzer import INTENTS, PromptAnalysis, analyze
from contentforge.text.prompt_library import load_prompt
from contentforge.text.providers.protocol import StructuredResult, TextProvider

Intent = Literal["portrait", "product", "landscape", "food", "fitness", "general"]
Phrase = Annotated[str, Field(max_length=80)]


class PromptAspects(BaseModel):
    """The structured answer: what a prompt asks for, aspect by aspect."""

    subject: str = Field(max_length=200)
    style: list[Phrase] = Field(default_factory=list, max_length=6)
    scene: list[Phrase] = Field(default_factory=list, max_length=6)
    mood: list[Phrase] = Field(default_factory=list, max_length=6)
    lighting: list[Phrase] = Field(default_factory=list, max_length=6)
    quality: list[Phrase] = Field(default_factory=list, max_length=6)
    intent: Intent = "general"


ASPECTS = ("style", "scene", "mood", "lighting", "quality")


def analyze_with(
    provider: TextProvider, prompt: str
) -> tuple[PromptAnalysis, StructuredResult[PromptAspects] | None]:
    """``prompt`` analysed by the chain's first provider that answers, and that (paid) call; the rules'
    analysis and None when only the offline engine answered or the chain failed."""
    rules = analyze(prompt)
    template = load_prompt("prompt_analysis")
    system, user = template.render(prompt=rules.prompt, intents=", ".join([*INTENTS, "general"]))
    # What the offline engine answers with: the rules' own reading, in the schema's terms.
    context: dict[str, object] = {"subject": rules.subject[:200], "intent": rules.intent}
    context |= {aspect: [t[:80] for t in getattr(rules, aspect)][:6] for aspect in ASPECTS}
    try:
        answer = provider.generate_structured(
            user,
            PromptAspects,
            system=system,
            max_tokens=400,
            temperature=0.0,
            prompt_version=template.id,
            context=context,
        )
    except ContentForgeError:
        return rules, None
    if answer.provider == "offline":
        return rules, None
    aspects = answer.value
    phrases = {aspect: tuple(p.strip() for p in getattr(aspects, aspect) if p.strip()) for aspect in ASPECTS}
    named = [p for aspect in ASPECTS for p in phrases[aspect] if p.lower() not in rules.prompt.lower()]
    analysis = PromptAnalysis(
        prompt=rules.prompt,
        chunks=tuple(dict.fromkeys([*rules.chunks, *named])),
        subject=aspects.subject.strip() or rules.subject,
        intent=aspects.intent,
        found=rules.found,
        source=f"{answer.provider} ({answer.result.model})",
        **phrases,
    )
    return analysis, answer
