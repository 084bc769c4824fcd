"""Prompt analysis, offline: subject, style, scene, mood, lighting, quality terms and intent by rules.

Each aspect has a vocabulary of phrases; a prompt's comma- or "with"-separated chunks are matched
against them. What no vocabulary claims (minus quality boilerplate) is the subject. The analysis is
a summary for people and for the optimizer; the LoRA recommender works on sentence embeddings of the
prompt's chunks, so paraphrases the vocabularies miss still match (see ``recommender``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

VOCABULARY: dict[str, tuple[str, ...]] = {
    "style": (
        "photo",
        "photograph",
        "photorealistic",
        "film",
        "35mm",
        "analog",
        "polaroid",
        "anime",
        "manga",
        "cartoon",
        "watercolor",
        "watercolour",
        "oil painting",
        "sketch",
        "pencil",
        "ink",
        "pixel art",
        "3d render",
        "low poly",
        "claymation",
        "vaporwave",
        "cyberpunk",
        "art deco",
        "ukiyo-e",
        "comic",
        "minimalist",
        "vintage",
        "retro",
        "cinematic",
        "isometric",
        "line art",
        "impressionist",
    ),
    "lighting": (
        "golden hour",
        "sunset",
        "sunrise",
        "neon",
        "studio lighting",
        "softbox",
        "backlit",
        "rim light",
        "candlelight",
        "moonlight",
        "natural light",
        "dramatic lighting",
        "soft light",
        "harsh light",
        "volumetric",
        "god rays",
        "low key",
        "high key",
        "overcast",
    ),
    "mood": (
        "cozy",
        "moody",
        "dramatic",
        "serene",
        "calm",
        "happy",
        "melancholic",
        "energetic",
        "dark",
        "whimsical",
        "romantic",
        "eerie",
        "playful",
        "epic",
        "peaceful",
        "gloomy",
    ),
    "scene": (
        "beach",
        "city",
        "street",
        "forest",
        "mountain",
        "gym",
        "kitchen",
        "cafe",
        "studio",
        "office",
        "desert",
        "ocean",
        "underwater",
        "space",
        "snow",
        "park",
        "bedroom",
        "rooftop",
        "garden",
        "night",
    ),
    "quality": (
        "masterpiece",
        "best quality",
        "high quality",
        "highly detailed",
        "ultra detailed",
        "8k",
        "4k",
        "hdr",
        "sharp focus",
        "award winning",
        "intricate",
        "professional",
    ),
}
INTENTS: dict[str, tuple[str, ...]] = {
    "portrait": ("portrait", "headshot", "selfie", "face", "woman", "man", "girl", "boy", "person"),
    "product": ("product", "bottle", "package", "packshot", "on a white background", "sneaker", "watch"),
    "landscape": ("landscape", "vista", "mountain", "valley", "seascape", "skyline"),
    "food": ("food", "dish", "meal", "coffee", "cake", "salad", "breakfast", "smoothie"),
    "fitness": ("workout", "gym", "yoga", "running", "fitness", "training", "squat"),
}
_DANGLING = frozenset({"a", "an", "the", "in", "on", "at", "of", "with", "by", "and", "from", "into"})
_SPLIT = re.compile(r",|;|\.\s|\bwith\b|\bin the style of\b|\bin\b(?= [a-z]+ style)", re.IGNORECASE)


@dataclass(frozen=True)
class PromptAnalysis:
    prompt: str
    chunks: tuple[str, ...]
    subject: str
    style: tuple[str, ...] = ()
    lighting: tuple[str, ...] = ()
    mood: tuple[str, ...] = ()
    scene: tuple[str, ...] = ()
    quality: tuple[str, ...] = ()
    intent: str = "general"
    found: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = "rules"
    """Who read the prompt: ``rules`` (this module) or the text provider and model that answered."""

    def line(self) -> str:
        parts = [f"subject '{self.subject}'", f"intent {self.intent}"]
        if self.source != "rules":
            parts.append(f"read by {self.source}")
        for aspect in ("style", "scene", "mood", "lighting", "quality"):
            values = getattr(self, aspect)
            if values:
                parts.append(f"{aspect} {', '.join(values)}")
        return "; ".join(parts)


def _terms(text: str, vocabulary: tuple[str, ...]) -> tuple[str, ...]:
    lowered = text.lower()
    return tuple(term for term in vocabulary if re.search(rf"(?<![a-z]){re.escape(term)}(?![a-z])", lowered))


def analyze(prompt: str) -> PromptAnalysis:
    """The rule-based analysis of ``prompt``; never fails, never needs a model or the network."""
    text = " ".join(prompt.split())
    chunks = tuple(c.strip(" .") for c in _SPLIT.split(text) if c and c.strip(" ."))
    found = {aspect: _terms(text, words) for aspect, words in VOCABULARY.items()}
    claimed = {t for terms in found.values() for t in terms}
    subject_chunks = [c for c in chunks if not any(t in c.lower() for t in found["quality"])]
    subject = subject_chunks[0] if subject_chunks else (chunks[0] if chunks else text)
    for term in sorted(claimed, key=len, reverse=True):
        subject = re.sub(rf"(?i)(?<![a-z]){re.escape(term)}(?![a-z])", "", subject)
    words = subject.split()
    while words and words[-1].lower() in _DANGLING:  # "a woman in a [cozy cafe]" -> "a woman"
        words.pop()
    subject = " ".join(words).strip(" ,-") or (chunks[0] if chunks else text)
    intent_scores = {name: len(_terms(text, words)) for name, words in INTENTS.items()}
    intent = max(intent_scores, key=lambda k: intent_scores[k]) if any(intent_scores.values()) else "general"
    return PromptAnalysis(
        prompt=text,
        chunks=chunks or (text,),
        subject=subject,
        style=found["style"],
        lighting=found["lighting"],
        mood=found["mood"],
        scene=found["scene"],
        quality=found["quality"],
        intent=intent,
        found=found,
    )
