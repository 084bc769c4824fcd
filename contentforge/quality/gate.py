"""The quality gate every generated text passes before anyone sees it: topics, briefs, posts, hooks.

Rules (each a ``GateIssue.rule``):

- ``named``: the brand or persona is named where the text is meant to speak for it;
- ``repeated_sentence``: no sentence said twice (filler repeats itself);
- ``unfilled_slot``: no template slots left (``{kw}``, ``{{name}}``, ``[PRODUCT]``, "lorem ipsum",
  "None"), no word stuttered three times, no DNA field name standing in for a real noun
  ("Products mistakes to avoid");
- ``pasted_price``: a title, topic or hashtag carries no price (a pasted product line);
- ``untraceable``: every price, every product named beside a price and every strong claim
  ("award-winning", "clinically proven", "100%") is found in the brand's DNA;
- ``platform``: the platform's caption rules (``contentforge.text.platform_rules.check_caption``);
- ``engagement_bait``: none of the react, comment, share, tag or vote baiting that Meta's feed
  ranking demotes ("Double tap if", "Tell me in the comments", "Share this with the friend who",
  "Tag someone who", "Vote with a reaction"). ``remove_engagement_bait`` drops such sentences, so a
  call to action is rewritten or dropped instead of the text being thrown away.

``gate_text`` runs a text through the rules, regenerates it once when it fails, then takes the
fallback or marks the text for review: a failing text is never returned as if it passed. Its
``GateResult`` is stored with the text (``source["quality_gate"]``) and shown where it is reviewed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from contentforge.domain.models import Platform
from contentforge.domain.strategy import BrandDNA
from contentforge.quality.facts import PRICE_RE, price_of, split_product
from contentforge.text.platform_rules import check_caption

TextKind = Literal["topic", "title", "brief", "blog", "social", "hook", "cta", "image_prompt"]

# Meta's engagement-bait categories (react, comment, share, tag, vote baiting): phrasings that ask
# for an interaction for its own sake. A genuine question ("What would you add?") is not bait.
ENGAGEMENT_BAIT: dict[str, tuple[str, ...]] = {
    "react": (
        r"\bdouble[- ]tap\b",
        r"\b(?:like|heart|react(?: with)?|smash (?:that|the) like)\b[^.!?\n]{0,30}\bif\b",
        r"\b(?:hit|smash|tap|drop|leave) (?:a |that |the )?(?:like|heart|❤️|👍|🔥)",
        r"\blike (?:this|it) if\b",
    ),
    "comment": (
        r"\b(?:tell|let) (?:me|us) (?:know )?in the comments\b",
        r"\bcomment (?:below|['\"“][^'\"”]{1,20}['\"”]|yes|your|with|if)\b",
        r"\b(?:type|drop|write) ['\"“]?\w+['\"”]? (?:below|in the comments)\b",
        r"\bdrop (?:a|an|your) [^.!?\n]{0,25}(?:below|in the comments)\b",
        r"\bin the comments\b[^.!?\n]{0,30}\b(?:if|and I)\b",
        r"\bshare in the comments\b",
    ),
    "share": (
        r"\bshare (?:this|it) (?:with|if)\b",
        r"\bshare with (?:a|your|the) (?:friend|friends|bestie|someone)\b",
        r"\b(?:repost|retweet|pass it on|send this to)\b[^.!?\n]{0,40}",
    ),
    "tag": (
        r"\btag (?:a|your|the|someone|somebody|me|us|3|three|two|friends?)\b",
        r"\b(?:duet|stitch) this\b",
    ),
    "vote": (
        r"\bvote (?:with|by|for)\b",
        r"\b(?:like|react) for [^.!?\n]{1,30}, (?:comment|share|react) for\b",
        r"\bcomment [a-z0-9] (?:or|for) [a-z0-9]\b",
    ),
}
_BAIT_RES = [(kind, re.compile(p, re.IGNORECASE)) for kind, ps in ENGAGEMENT_BAIT.items() for p in ps]
_SENTENCE_RE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")
_SLOT_RE = re.compile(
    r"\{\{?\s*[A-Za-z_][\w.]*\s*\}?\}|\[(?:[A-Z_ ]{3,}|product|brand|name|keyword)\]"
    r"|<(?:brand|product|name)>|"
    r"(?i:\blorem ipsum\b)|\bTODO\b|\bTBD\b|(?<![\w-])(?:None|null|undefined|NaN)(?![\w-])",
)
_STUTTER_RE = re.compile(r"\b(\w+)(?:\s+\1\b){2,}", re.IGNORECASE)
_PLACEHOLDER_NOUN_RE = re.compile(
    r"(?<![#\w])(?:Products|Services|Keywords|Topics|Bestsellers|Collection|Values|Audience)\b(?!\s*:)"
)
_CLAIM_RE = re.compile(
    r"\b(?:award[- ]winning|clinically (?:proven|tested)|scientifically proven|guaranteed"
    r"|world'?s (?:best|first)|number one|#1|best[- ]selling|certified|doctor[- ]recommended|\d{1,3}\s?%)",
    re.IGNORECASE,
)
_PRODUCT_BESIDE_PRICE_RE = re.compile(
    r"((?:The |the )?(?:[A-Z][\w'’-]+ ){0,4}[A-Z][\w'’-]+)[\s:,(—–-]{1,4}(?:[$€£]|EUR\s)\s?\d"
)


@dataclass(frozen=True)
class GateIssue:
    rule: str
    detail: str


@dataclass
class GateResult:
    """What the gate found in one text; ``passed`` when nothing."""

    kind: str
    issues: list[GateIssue] = field(default_factory=list)
    status: str = "passed"
    """passed, regenerated (the second try passed), fallback (the fallback passed) or needs_review."""
    attempts: int = 1

    @property
    def passed(self) -> bool:
        return not self.issues

    @property
    def rules_failed(self) -> list[str]:
        return sorted({i.rule for i in self.issues})

    def as_dict(self) -> dict[str, Any]:
        """JSON for ``source["quality_gate"]``: stored with the text and shown to reviewers."""
        return {
            "kind": self.kind,
            "status": self.status,
            "passed": self.passed,
            "attempts": self.attempts,
            "issues": [{"rule": i.rule, "detail": i.detail} for i in self.issues],
        }


def engagement_bait(text: str) -> list[tuple[str, str]]:
    """``(category, phrase)`` for every engagement-bait phrasing in ``text``."""
    found = []
    for kind, rx in _BAIT_RES:
        if match := rx.search(text):
            found.append((kind, match.group(0)))
    return found


def remove_engagement_bait(text: str) -> str:
    """``text`` without its baiting sentences (lines kept apart); honest sentences stay as they are."""
    lines = []
    for line in text.split("\n"):
        kept = [s for s in _SENTENCE_RE.findall(line) if not engagement_bait(s)]
        lines.append(" ".join(s.strip() for s in kept).strip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def rewrite_cta(cta: str, honest: str) -> str:
    """A call to action without bait: the honest part of ``cta``, else ``honest``."""
    kept = remove_engagement_bait(cta)
    return kept if len(re.findall(r"\w+", kept)) >= 2 else honest


def _sentences(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("#", "|")))
    return [s.strip() for s in _SENTENCE_RE.findall(body) if len(s.split()) >= 5]


def _dna_text(dna: BrandDNA) -> str:
    parts = [dna.brand]
    for name in dna.known_fields():
        parts += dna.items(name)
        parts.append(dna.field(name).evidence or "")
    return " ".join(parts).lower()


def _dna_prices(dna: BrandDNA) -> set[float]:
    prices = {p for item in dna.items("products") + dna.items("services") for p in split_product(item).prices}
    return prices | {p for ev in (dna.products.evidence, dna.services.evidence) if ev for p in price_of(ev)}


def check_text(
    text: str,
    kind: TextKind,
    *,
    dna: BrandDNA | None = None,
    must_name: Iterable[str] = (),
    platform: Platform | str | None = None,
    hashtags: list[str] | None = None,
    source_text: str | None = None,
) -> GateResult:
    """Every rule above against ``text``; ``must_name``: names of which at least one must appear.

    Traceability is checked against ``dna``, or against ``source_text`` (the brief or post a caption
    was derived from) when the DNA is not at hand: every price and claim must appear there.
    """
    issues: list[GateIssue] = []
    names = [n for n in must_name if n]
    if names and not any(n.lower() in text.lower() for n in names):
        issues.append(GateIssue("named", f"names none of {', '.join(repr(n) for n in names)}"))
    seen: dict[str, str] = {}
    for sentence in _sentences(text):
        key = " ".join(re.findall(r"\w+", sentence.lower()))
        if key in seen:
            issues.append(GateIssue("repeated_sentence", f"said twice: {sentence[:120]!r}"))
        seen[key] = sentence
    for rx, what in ((_SLOT_RE, "unfilled slot"), (_STUTTER_RE, "stuttered word")):
        if match := rx.search(text):
            issues.append(GateIssue("unfilled_slot", f"{what}: {match.group(0)!r}"))
    placeholder_text = "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith(("#", "-", "*", "|"))
    )
    if match := _PLACEHOLDER_NOUN_RE.search(placeholder_text):
        issues.append(
            GateIssue("unfilled_slot", f"a field name stands in for a real noun: {match.group(0)!r}")
        )
    for tag in hashtags or []:
        if _PLACEHOLDER_NOUN_RE.fullmatch(tag):
            issues.append(GateIssue("unfilled_slot", f"hashtag #{tag} is a field name"))
    if kind in ("topic", "title", "hook") and PRICE_RE.search(text):
        issues.append(GateIssue("pasted_price", f"a price in a {kind}: {PRICE_RE.search(text).group(0)!r}"))  # type: ignore[union-attr]
    if dna is not None:
        issues += _untraceable(text, dna)
    elif source_text is not None:
        issues += _not_in_source(text, source_text)
    if platform is not None:
        issues += [GateIssue("platform", p) for p in check_caption(text, hashtags or [], platform)]
    for category, phrase in engagement_bait(text):
        issues.append(GateIssue("engagement_bait", f"{category} baiting: {phrase!r}"))
    return GateResult(kind=kind, issues=issues)


def _untraceable(text: str, dna: BrandDNA) -> list[GateIssue]:
    issues: list[GateIssue] = []
    known = _dna_prices(dna)
    for price in price_of(text):
        if price not in known:
            issues.append(GateIssue("untraceable", f"price {price:g} is not in the brand's DNA"))
    products = [split_product(p).name.lower() for p in dna.items("products") + dna.items("services")]
    for match in _PRODUCT_BESIDE_PRICE_RE.finditer(text):
        name = match.group(1).strip().lower().removeprefix("the ")
        if not any(name in p or p.removeprefix("the ") in name for p in products):
            issues.append(GateIssue("untraceable", f"product {match.group(1)!r} is not in the brand's DNA"))
    source = _dna_text(dna)
    for match in _CLAIM_RE.finditer(text):
        if match.group(0).lower() not in source:
            issues.append(GateIssue("untraceable", f"claim {match.group(0)!r} is not in the brand's DNA"))
    return issues


def _not_in_source(text: str, source: str) -> list[GateIssue]:
    issues: list[GateIssue] = []
    stated = set(price_of(source))
    for price in price_of(text):
        if price not in stated:
            issues.append(GateIssue("untraceable", f"price {price:g} is not in the text it comes from"))
    for match in _CLAIM_RE.finditer(text):
        if match.group(0).lower() not in source.lower():
            issues.append(GateIssue("untraceable", f"claim {match.group(0)!r} is not in its source text"))
    return issues


@dataclass
class Gated:
    """A text after the gate, and the gate's verdict on it."""

    text: str
    result: GateResult


def gate_text(
    text: str,
    check: Callable[[str], GateResult],
    *,
    regenerate: Callable[[], str] | None = None,
    fallback: Callable[[], str] | None = None,
) -> Gated:
    """``text`` if it passes; else one regeneration; else the fallback if it passes; else the best
    attempt marked ``needs_review`` (never silently passed on)."""
    result = check(text)
    if result.passed:
        return Gated(text, result)
    attempts = 1
    if regenerate is not None:
        attempts += 1
        second = regenerate()
        second_result = check(second)
        if second_result.passed:
            second_result.status, second_result.attempts = "regenerated", attempts
            return Gated(second, second_result)
        if len(second_result.issues) < len(result.issues):  # review the better of the two
            text, result = second, second_result
    if fallback is not None:
        alternative = fallback()
        alternative_result = check(alternative)
        if alternative_result.passed:
            alternative_result.status, alternative_result.attempts = "fallback", attempts
            return Gated(alternative, alternative_result)
    result.status, result.attempts = "needs_review", attempts
    return Gated(text, result)
