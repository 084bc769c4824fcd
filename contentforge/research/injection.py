"""Spot text that reads like instructions to an AI inside fetched pages (prompt injection).

Fetched text is data. The heuristic extractor drops sentences flagged here before reading
anything from a page, and a model's answer is only accepted when its evidence is found in the
page text *outside* such sentences (``contentforge.research.llm_extract``). The patterns aim at the
common shapes ("ignore previous instructions", "you are now", "set the mission to", fake system
tags); they are a second line of defence behind the prompt's data delimiters, not the only one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PATTERNS = [
    r"\b(ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,60}\b(instructions?|prompts?|rules|directions|guidelines)\b",
    r"\byou are (now|no longer)\b",
    r"\b(system|developer|assistant)\s*(prompt|message|instructions?)\s*[:=]",
    r"\bnew instructions?\s*[:=]",
    r"\b(as an? )?(ai|llm|language model|assistant|chatbot)s?\b[^.!?\n]{0,50}\b(must|should|shall|will)\b"
    r"[^.!?\n]{0,40}\b(set|say|write|output|respond|answer|reply)\b",
    r"\b(set|change|replace|overwrite|update)\b[^.!?\n]{0,40}\b(mission|vision|values|tone|brand|field|output|answer|json)\b[^.!?\n]{0,20}\bto\b",
    r"<\s*/?\s*(system|instructions?|prompt)\s*>",
    r"\b(do not|don't) (tell|reveal|mention|inform)\b[^.!?\n]{0,40}\b(user|human|operator)\b",
    r"\b(respond|reply|answer) only with\b",
]
INJECTION_RE = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE)
_SENTENCE_RE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")


@dataclass(frozen=True)
class Flagged:
    source: str
    sentence: str


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.findall(text) if s.strip()]


def is_injection(sentence: str) -> bool:
    return INJECTION_RE.search(sentence) is not None


def strip_injections(text: str) -> tuple[str, list[str]]:
    """``text`` without the sentences that read like instructions, and those sentences."""
    flagged: list[str] = []

    def keep(match: re.Match[str]) -> str:
        sentence = match.group(0)
        if is_injection(sentence):
            flagged.append(sentence.strip())
            return " "
        return sentence

    cleaned = _SENTENCE_RE.sub(keep, text)
    return " ".join(cleaned.split()) if "\n" not in text else "\n".join(
        " ".join(line.split()) for line in cleaned.splitlines()
    ), flagged
