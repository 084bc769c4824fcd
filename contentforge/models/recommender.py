"""The LoRA recommender: which installed LoRAs fit a prompt, and at what weights.

Each candidate LoRA is described by its name, description, tags and trigger words; that text and the
prompt (whole, and each of its chunks: "grainy 35mm" in "a cat, grainy 35mm") are embedded with
MiniLM (``embeddings``), and a LoRA's similarity is its best cosine over the prompt and its chunks, so
"analog film look" finds a LoRA described as "35mm film grain" without sharing a word.

Score = 0.60 · similarity + 0.10 · hub rating + 0.30 · learned feedback + exploration bonus: four
clear rejections (and four approvals of a near alternative) outweigh a 0.25 lead in similarity.
LoRAs of another base family than the model are never candidates; below ``MIN_SIMILARITY`` a LoRA is
not relevant whatever its other factors. Learned feedback is the smoothed approval/rating score of
the LoRA (``db.registry.FeedbackScore``, 0.5 when unknown); the exploration bonus (UCB-style,
``EXPLORATION / sqrt(1 + trials)``) keeps a LoRA with little feedback from being starved by one with
a long, merely decent record.

Weights: at most ``max_count`` LoRAs; each starts at its recommended weight scaled by its score
relative to the best, and if their sum (with the persona's own LoRA, which is always kept at its own
scale) passes ``weight_cap`` the recommended ones are scaled down to fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from contentforge.db.registry import FeedbackScore
from contentforge.models.analyzer import PromptAnalysis, analyze
from contentforge.models.embeddings import Embedder

SIMILARITY_WEIGHT, RATING_WEIGHT, FEEDBACK_WEIGHT = 0.60, 0.10, 0.30
MIN_SIMILARITY = 0.30
EXPLORATION = 0.05
NEUTRAL = 0.5
MIN_WEIGHT = 0.05


@dataclass(frozen=True)
class LoraCandidate:
    name: str
    family: str
    source: str
    """What the generation loads: a file path (registry) or ``registry:<name>`` (YAML registry)."""
    description: str = ""
    tags: tuple[str, ...] = ()
    trigger_words: tuple[str, ...] = ()
    recommended_weight: float = 0.8
    rating: float | None = None
    weight_name: str | None = None
    """The file inside a hub repo or folder, for YAML registry entries that name one."""

    def text(self) -> str:
        parts = [self.name.replace("-", " ").replace("_", " ")]
        if self.description:
            parts.append(self.description)
        if self.tags:
            parts.append(", ".join(self.tags))
        if self.trigger_words:
            parts.append(", ".join(self.trigger_words))
        return ". ".join(parts)


@dataclass(frozen=True)
class ScoredLora:
    candidate: LoraCandidate
    similarity: float
    matched: str
    """The part of the prompt it matched best."""
    score: float
    feedback: float
    weight: float = 0.0
    kept: bool = False
    """The persona's own LoRA: kept whatever the prompt."""

    def reason(self) -> str:
        if self.kept:
            return f"LoRA {self.candidate.name} {self.weight:.2f} (the persona's own)"
        learned = f", feedback {self.feedback:.2f}" if self.feedback != NEUTRAL else ""
        return (
            f"LoRA {self.candidate.name} {self.weight:.2f} "
            f"(similarity {self.similarity:.2f} to '{self.matched}'{learned})"
        )


@dataclass(frozen=True)
class Recommendation:
    analysis: PromptAnalysis
    chosen: tuple[ScoredLora, ...]
    ranked: tuple[ScoredLora, ...]
    """Every compatible candidate, best first (for explanations and the ASSISTED form)."""

    def line(self) -> str:
        if not self.chosen:
            return "no LoRA (none relevant)"
        return ", ".join(s.reason() for s in self.chosen)


def rank(
    prompt: str,
    candidates: list[LoraCandidate],
    family: str,
    embedder: Embedder,
    feedback: dict[str, FeedbackScore] | None = None,
    analysis: PromptAnalysis | None = None,
) -> tuple[PromptAnalysis, list[ScoredLora]]:
    """Every candidate of ``family`` scored against ``prompt`` (as ``analysis`` read it, by default the
    rules), best first."""
    analysis = analysis or analyze(prompt)
    usable = [c for c in candidates if c.family == family]
    if not usable:
        return analysis, []
    queries = [analysis.prompt, *[c for c in analysis.chunks if c != analysis.prompt]]
    query_vectors = embedder.encode(queries)
    lora_vectors = embedder.encode([c.text() for c in usable])
    similarities = lora_vectors @ query_vectors.T  # (loras, queries)
    feedback = feedback or {}
    total_trials = sum(f.trials for f in feedback.values())
    scored = []
    for index, candidate in enumerate(usable):
        row = similarities[index]
        best = int(np.argmax(row))
        similarity = float(row[best])
        learned = feedback.get(candidate.name)
        value = learned.value() if learned is not None else NEUTRAL
        trials = learned.trials if learned is not None else 0
        bonus = EXPLORATION * math.sqrt(math.log(total_trials + 2) / (trials + 1))
        rating = candidate.rating if candidate.rating is not None else NEUTRAL
        score = SIMILARITY_WEIGHT * similarity + RATING_WEIGHT * rating + FEEDBACK_WEIGHT * value + bonus
        scored.append(ScoredLora(candidate, similarity, queries[best], score, value))
    scored.sort(key=lambda s: (-s.score, s.candidate.name))
    return analysis, scored


def recommend(
    prompt: str,
    candidates: list[LoraCandidate],
    family: str,
    embedder: Embedder,
    *,
    max_count: int,
    weight_cap: float,
    feedback: dict[str, FeedbackScore] | None = None,
    persona_lora: LoraCandidate | None = None,
    persona_weight: float | None = None,
    analysis: PromptAnalysis | None = None,
) -> Recommendation:
    """At most ``max_count`` relevant LoRAs (plus the persona's own) with weights summing within the cap."""
    others = [c for c in candidates if persona_lora is None or c.name != persona_lora.name]
    analysis, ranked = rank(prompt, others, family, embedder, feedback, analysis)
    relevant = [s for s in ranked if s.similarity >= MIN_SIMILARITY][:max_count]
    kept: list[ScoredLora] = []
    budget = weight_cap
    if persona_lora is not None:
        weight = persona_weight if persona_weight is not None else persona_lora.recommended_weight
        kept.append(ScoredLora(persona_lora, 1.0, "", 1.0, NEUTRAL, weight=weight, kept=True))
        budget -= abs(weight)
    chosen: list[ScoredLora] = []
    if relevant and budget > MIN_WEIGHT:
        top = relevant[0].score
        raw = [s.candidate.recommended_weight * (s.score / top) for s in relevant]
        factor = min(1.0, budget / sum(raw)) if sum(raw) > 0 else 0.0
        for scored, weight in zip(relevant, raw, strict=True):
            final = math.floor(weight * factor * 100) / 100  # down: the sum stays within the cap
            if final >= MIN_WEIGHT:
                chosen.append(
                    ScoredLora(
                        scored.candidate,
                        scored.similarity,
                        scored.matched,
                        scored.score,
                        scored.feedback,
                        final,
                    )
                )
    return Recommendation(analysis=analysis, chosen=tuple(kept + chosen), ranked=tuple(ranked))
