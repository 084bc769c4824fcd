"""Keyword and phrase rules for captions, hooks and hashtags: cheap, local and explainable.

Each rule is a word-boundary regex with a weight in [0, 1]. A category's score combines the
weights of the *distinct* rules that matched as a noisy-or, ``1 - prod(1 - w)``: one strong rule
decides on its own, several weak signals (two insults) add up, and repeating the same word does not.
Weights are set against the default thresholds (sexual .90 reject / .40 suggestive / .70 restricted,
violence .70, hate .50, self_harm .50, harassment .60). The lists are deliberately modest starting
points; pass ``extra_rules`` to extend them (e.g. a maintained slur lexicon) without editing code.
Reasons name the rule that fired, never the text, so verdicts can be logged safely.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from contentforge.moderation.protocol import CATEGORIES, CategoryScores, ModerationInput


@dataclass(frozen=True)
class TextRule:
    """One named pattern; ``pattern`` is matched case-insensitively between word boundaries."""

    category: str
    name: str
    pattern: str
    weight: float

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"text rule {self.name!r}: unknown category {self.category!r}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"text rule {self.name!r}: weight must be in [0, 1], got {self.weight}")

    def compiled(self) -> re.Pattern[str]:
        return re.compile(rf"\b(?:{self.pattern})\b", re.IGNORECASE)


DEFAULT_RULES: tuple[TextRule, ...] = (
    # sexual: explicit terms reject; flirtatious wording lands in the suggestive tier only.
    TextRule(
        "sexual",
        "explicit-terms",
        r"porn\w*|xxx|blow ?jobs?|handjobs?|cum(?:shot|ming)?|orgasms?|"
        r"masturbat\w*|sex tapes?|hardcore sex|anal sex|send nudes|nude (?:pics?|photos?)",
        0.95,
    ),
    TextRule("sexual", "explicit-acts", r"fuck(?:ing)? (?:me|you|her|him)|have sex with|sex with me", 0.95),
    TextRule("sexual", "adult-platforms", r"onlyfans|only fans|fansly|18\+ content|nsfw", 0.75),
    TextRule("sexual", "flirtatious", r"sexy|thirst ?trap|spicy pics?|lingerie|naughty", 0.5),
    # violence: direct threats reject; violent vocabulary alone does not.
    TextRule(
        "violence",
        "direct-threat",
        r"(?:i(?:'m| am)? (?:going to|gonna|will)|i'll) (?:kill|shoot|stab|murder|hurt) (?:you|u)",
        0.9,
    ),
    TextRule("violence", "death-wish", r"(?:you|u) (?:deserve|ought) to die|hope (?:you|u) die", 0.8),
    TextRule("violence", "weapons-attack", r"shoot up|bomb (?:the|your)|mass shooting", 0.8),
    TextRule("violence", "violent-vocabulary", r"bloodbath|massacre|slaughter|beat(?:ing)? to death", 0.35),
    # hate: dehumanising language and extremist codes (placeholder list; extend via extra_rules).
    TextRule("hate", "dehumanising", r"(?:are|is) (?:vermin|subhuman)", 0.6),
    TextRule("hate", "extremist-codes", r"heil hitler|sieg heil|white power|14/88", 0.9),
    TextRule("hate", "exclusion", r"go back to your (?:own )?country", 0.6),
    # self_harm: intent and pro-eating-disorder content reject; a bare mention stays under.
    TextRule(
        "self_harm",
        "intent",
        r"kill myself|end my life|want to die|(?:want|going|gonna) to (?:cut|hurt) myself",
        0.9,
    ),
    TextRule("self_harm", "pro-eating-disorder", r"pro-?ana|pro-?mia|thinspo\w*|starve myself", 0.7),
    TextRule("self_harm", "mention", r"suicid(?:e|al)|self-?harm", 0.4),
    # harassment: telling someone to die rejects; insults reject when two of them appear.
    TextRule("harassment", "incitement", r"kill yourself|kys|go die", 0.9),
    TextRule(
        "harassment",
        "personal-attack",
        r"(?:you(?:'re| are)|ur) (?:so )?(?:ugly|pathetic|worthless|disgusting|a loser)",
        0.45,
    ),
    TextRule("harassment", "insult", r"idiot|moron|loser|nobody likes you", 0.35),
)


_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00a0": " "})


def normalise(text: str) -> str:
    """Fold compatibility characters and curly quotes so 'ｐｏｒｎ' and "I’m" match the rules."""
    return unicodedata.normalize("NFKC", text).translate(_QUOTES)


class TextRulesBackend:
    """Scores every category from the piece's texts; the image is ignored."""

    name = "text_rules"

    def __init__(
        self, rules: Sequence[TextRule] = DEFAULT_RULES, extra_rules: Iterable[TextRule] = ()
    ) -> None:
        self.rules = (*rules, *extra_rules)
        self._compiled = [(rule, rule.compiled()) for rule in self.rules]

    def scores(self, item: ModerationInput) -> CategoryScores:
        text = "\n".join(normalise(t) for t in item.texts if t)
        if not text:
            return CategoryScores.zero()
        remaining: dict[str, float] = dict.fromkeys(CATEGORIES, 1.0)  # prod(1 - w) per category
        reasons: list[str] = []
        for rule, regex in self._compiled:
            if regex.search(text):
                remaining[rule.category] *= 1.0 - rule.weight
                reasons.append(
                    f"{self.name}: {rule.category} rule {rule.name!r} matched (weight {rule.weight:.2f})"
                )
        return CategoryScores({c: 1.0 - r for c, r in remaining.items()}, reasons)
