"""Monthly topics for a persona: offline from the niche's angles, the DNA and the season, or from a model.

Offline, each topic combines one of the niche's angles with a keyword drawn from the persona's
interests and the brand's products, keywords and topics, under a content pillar (education,
how-to, product spotlight, behind the scenes, community, seasonal). Deterministic by persona,
month and seed. With a model in the chain, prompt ``topics.v<N>`` asks for them.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import random
import re
from dataclasses import dataclass

from contentforge.domain.models import Persona, slugify
from contentforge.domain.strategy import BrandDNA, Topic, TopicDraft, TopicPlan
from contentforge.errors import ContentForgeError, InvalidInput
from contentforge.quality.facts import split_product
from contentforge.quality.gate import GateResult, check_text
from contentforge.strategy.niches import NICHES, niche_for_hint
from contentforge.text.prompt_library import load_prompt
from contentforge.text.providers.protocol import StructuredResult, TextProvider

log = logging.getLogger(__name__)
PILLARS = ("education", "how-to", "product spotlight", "behind the scenes", "community", "seasonal")
SEASONS = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring", 6: "summer",
           7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}  # fmt: skip
_MONTH_RE = re.compile(r"(\d{4})-(\d{2})", re.ASCII)


def _rng(*parts: object) -> random.Random:
    return random.Random(
        int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")
    )


def parse_month(month: str) -> tuple[int, int]:
    """``(year, month)`` of a ``YYYY-MM`` string; anything else is an ``InvalidInput`` naming the value.

    Public because the CLI calls it too: ``contentforge topics plan --month`` must refuse a bad month
    in one line before a Prefect server is started, with the very message the flow would give.
    """
    match = _MONTH_RE.fullmatch(month) if isinstance(month, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise InvalidInput(f"month must be YYYY-MM, got {month!r}")
    return int(match.group(1)), int(match.group(2))


def _keywords(persona: Persona) -> list[str]:
    return list(dict.fromkeys(w.strip() for w in persona.interests if w.strip() and len(w) <= 50))


_WORD_RE = re.compile(r"[a-záéíóúñ][a-záéíóúñ'-]+")
_COMMON = frozenset(
    ("and", "the", "for", "with", "from", "your", "our", "you", "who", "what", "that", "this", "into",
     "about", "more", "less", "every", "each", "their", "them", "they", "have", "make", "made", "good",
     "great", "home", "people", "day", "days", "week", "weekly", "daily")
)  # fmt: skip


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in _WORD_RE.findall(text.lower()) if len(w) > 3 and w not in _COMMON}


@dataclass(frozen=True)
class Subject:
    """What one offline topic is about, and the DNA field (or persona) it comes from."""

    text: str
    kind: str
    """product, value, audience or interest."""
    source: str
    """``dna.products`` and so on, or ``persona.interests``: shown so a reviewer can check it."""


def brand_subjects(persona: Persona, dna: BrandDNA) -> list[Subject]:
    """The brand's products (names only), values, audience segments, and those of the persona's
    interests that share a word with what the brand says about itself (a coffee brand's persona
    writes about coffee brewing, not sourdough baking)."""
    products = [split_product(p).name for p in dna.items("products")]
    subjects = [Subject(n, "product", "dna.products") for n in products if 2 <= len(n) <= 60]
    subjects += [Subject(v, "value", "dna.values") for v in dna.items("values") if len(v) <= 60]
    subjects += [
        Subject(a, "audience", "dna.audience_segments")
        for a in dna.items("audience_segments")
        if len(a) <= 60
    ]
    said = [dna.brand, *dna.items("products"), *dna.items("values"), *dna.items("unique_selling_points")]
    said += [dna.text(name) for name in ("mission", "description", "industry", "tagline")]
    brand_words = _words(" ".join(said))
    # a niche interest ("coffee brewing"), not a single keyword the persona inherited from the DNA
    subjects += [
        Subject(i, "interest", "persona.interests")
        for i in persona.interests
        if len(i.split()) >= 2 and _words(i) & brand_words
    ]
    seen: set[str] = set()
    unique = []
    for subject in subjects:
        if subject.text.lower() not in seen:
            seen.add(subject.text.lower())
            unique.append(subject)
    return unique


def _the(name: str) -> str:
    """'The Basecamp Kit' reads 'the Basecamp Kit' mid-sentence."""
    return "the " + name[4:] if name.startswith("The ") else name


# Title shapes per kind of subject, each naming only the subject and the brand: no slots a reader
# could see unfilled, no prices (a product's price lives in the brief's product facts).
TITLES: dict[str, tuple[tuple[str, str], ...]] = {
    "product": (
        ("product spotlight", "Inside {the_subject}: what it is and who it is for"),
        ("how-to", "How to get the most out of {the_subject}"),
        ("behind the scenes", "How {brand} makes {the_subject}"),
    ),
    "value": (
        ("behind the scenes", "{Subject}: what it means at {brand}"),
        ("education", "{Subject}, in practice at {brand}"),
    ),
    "audience": (
        ("community", "{brand} for {subject_lower}: where to start"),
        ("how-to", "A {season} guide for {subject_lower}"),
    ),
    "interest": (
        ("education", "{Subject} with {brand}: a practical guide"),
        ("seasonal", "{Subject} this {season}, with {brand}"),
    ),
}


def _brand_topics(
    persona: Persona, dna: BrandDNA, month: str, count: int, rng: random.Random
) -> list[TopicDraft]:
    subjects = brand_subjects(persona, dna)
    if not subjects:
        raise InvalidInput(
            f"brand {dna.brand!r} has no products, values or audience in its DNA to plan topics from; "
            "research it with a page or document that states them, or configure a model"
        )
    _, mon = parse_month(month)
    season = SEASONS[mon]
    # round-robin over kinds so one month mixes products, values, audience and the persona's angle
    by_kind: dict[str, list[Subject]] = {}
    for subject in subjects:
        by_kind.setdefault(subject.kind, []).append(subject)
    order = [k for k in ("product", "value", "audience", "interest") if k in by_kind]
    candidates: list[tuple[Subject, str, str]] = []
    for round_ in range(max(len(TITLES[k]) * len(v) for k, v in by_kind.items())):
        for kind in order:
            items = by_kind[kind]
            subject = items[round_ % len(items)]
            pillar, shape = TITLES[kind][(round_ // len(items) + rng.randrange(2)) % len(TITLES[kind])]
            candidates.append((subject, pillar, shape))
    drafts: list[TopicDraft] = []
    for subject, pillar, shape in candidates:
        text = subject.text
        title = shape.format(
            brand=dna.brand,
            the_subject=_the(text),
            Subject=text[:1].upper() + text[1:],
            subject_lower=text if text[:2].isupper() else text[:1].lower() + text[1:],
            season=season,
        )
        if title.lower() in {d.title.lower() for d in drafts}:
            continue
        related = [s.text for s in subjects if s is not subject][:3]
        audience = dna.items("audience_segments")[:3]
        who = f" for {', '.join(audience)}" if audience else ""
        angle = (
            f"{persona.name} writes {pillar} content on {text} ({subject.source}) for {dna.brand}{who}, "
            f"in {persona.tone}; only facts from the brand's DNA."
        )
        drafts.append(
            TopicDraft(title=title, angle=angle[:600], pillar=pillar, keywords=[subject.text, *related])
        )
        if len(drafts) == count:
            break
    return drafts


def offline_topics(
    persona: Persona, month: str, *, dna: BrandDNA | None = None, count: int = 4, seed: int = 0
) -> list[TopicDraft]:
    """Offline topics: from the brand's products, values, audience and the persona's related
    interests when there is a brand; from the persona's niche angles and interests when not."""
    if not 1 <= count <= 20:
        raise InvalidInput(f"count must be 1-20, got {count}")
    _, mon = parse_month(month)
    rng = _rng("topics", persona.id, month, seed)
    if dna is not None:
        return TopicPlan(topics=_brand_topics(persona, dna, month, count, rng)).topics
    niche = NICHES.get(persona.niche) or niche_for_hint(persona.niche)
    keywords = _keywords(persona)
    rng.shuffle(keywords)
    angles = list(niche.angles)
    rng.shuffle(angles)
    season = SEASONS[mon]
    month_name = calendar.month_name[mon]
    drafts: list[TopicDraft] = []
    for i in range(count):
        kw = keywords[i % len(keywords)]
        pillar = PILLARS[(i + rng.randrange(len(PILLARS))) % len(PILLARS)] if i else "education"
        if pillar == "product spotlight":
            pillar = "how-to"  # no brand, no products to spotlight
        if pillar == "seasonal":
            title = f"{season.title()} edition: {angles[i % len(angles)].format(kw=kw)}"
        else:
            title = angles[i % len(angles)].format(kw=kw)
        title = title[:1].upper() + title[1:]
        if title.lower() in {d.title.lower() for d in drafts}:
            title = f"{title} ({month_name} notes)"
        article = "an" if pillar[0] in "aeiou" else "a"
        angle = (
            f"{persona.name} shares {article} {pillar} piece on {kw} (voice: {persona.tone}), "
            f"with practical steps readers can try this {season}."
        )
        extra = [k for k in keywords if k != kw][:3]
        drafts.append(TopicDraft(title=title, angle=angle, pillar=pillar, keywords=[kw, *extra]))
    return TopicPlan(topics=drafts).topics


def topic_id(persona_id: str, month: str, title: str) -> str:
    digest = hashlib.sha256(f"{persona_id}|{month}|{title.lower()}".encode()).hexdigest()[:8]
    return f"{slugify(persona_id)[:30]}-{month}-{digest}"


@dataclass(frozen=True)
class TopicsOutcome:
    topics: list[Topic]
    result: StructuredResult[TopicPlan] | None = None
    fallback_reason: str | None = None


def plan_topics(
    persona: Persona,
    month: str,
    provider: TextProvider | None,
    *,
    dna: BrandDNA | None = None,
    brand_id: str | None = None,
    count: int = 4,
    seed: int = 0,
) -> TopicsOutcome:
    """``count`` topics for ``persona`` in ``month`` (YYYY-MM), proposed (not yet approved)."""
    candidates = offline_topics(persona, month, dna=dna, count=min(20, count + 4), seed=seed)
    offline, spares = candidates[:count], candidates[count:]
    result: StructuredResult[TopicPlan] | None = None
    reason: str | None = None
    drafts = offline
    source: dict[str, object] = {"provider": "offline", "model": "offline-rules", "prompt_version": None}
    if provider is not None:
        template = load_prompt("topics")
        dna_lines = (
            "\n".join(f"- {n}: {dna.field(n).display()}" for n in dna.known_fields()) if dna else "- none"
        )
        system, user = template.render(
            name=persona.name,
            niche=persona.niche,
            interests=", ".join(persona.interests),
            tone=persona.tone,
            platforms=", ".join(persona.platforms),
            month=f"{calendar.month_name[parse_month(month)[1]]} {month[:4]}",
            count=count,
            brand=dna.brand if dna else "(no brand)",
            dna=dna_lines,
        )
        try:
            result = provider.generate_structured(
                user, TopicPlan, system=system, max_tokens=2000, temperature=0.8,
                prompt_version=template.id, context={"topics": offline},
            )  # fmt: skip
            drafts = result.value.topics[:count]
            source = {
                "provider": result.provider,
                "model": result.result.model,
                "prompt_version": template.id,
                "cost_usd": result.result.cost_usd,
                "tokens": result.result.input_tokens + result.result.output_tokens,
            }
        except ContentForgeError as exc:
            log.warning("no model planned topics for %s (%s); using the offline rules", persona.id, exc)
            reason = str(exc)
    topics = [
        Topic(
            **d.model_dump(),
            id=topic_id(persona.id, month, d.title),
            persona_id=persona.id,
            brand_id=brand_id,
            month=month,
            source={**source, "quality_gate": gate.as_dict()},
        )
        for d, gate in gate_topics(drafts, spares, dna)
    ]
    return TopicsOutcome(topics, result, reason)


def check_topic(draft: TopicDraft, dna: BrandDNA | None) -> GateResult:
    """The quality gate on a topic's title and angle (no slots, no prices, nothing untraceable)."""
    return check_text(f"{draft.title}\n{draft.angle}", "topic", dna=dna)


def gate_topics(
    drafts: list[TopicDraft], spares: list[TopicDraft], dna: BrandDNA | None
) -> list[tuple[TopicDraft, GateResult]]:
    """Each draft through the gate. One that fails is regenerated once (the next spare offline
    topic); if that fails too the draft is kept and marked ``needs_review``, never passed silently."""
    used = {d.title.lower() for d in drafts}
    spares = [s for s in spares if s.title.lower() not in used]
    out: list[tuple[TopicDraft, GateResult]] = []
    for draft in drafts:
        result = check_topic(draft, dna)
        if not result.passed and spares:
            spare = spares.pop(0)
            second = check_topic(spare, dna)
            if second.passed:
                second.status, second.attempts = "regenerated", 2
                out.append((spare, second))
                continue
            result.attempts = 2
        if not result.passed:
            result.status = "needs_review"
        out.append((draft, result))
    return out
