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


def _keywords(persona: Persona, dna: BrandDNA | None) -> list[str]:
    words = list(persona.interests)
    if dna is not None:
        words += [p.split(" - ")[0].strip() for p in dna.items("products")]
        words += [t for t in dna.items("topics") if len(t.split()) <= 4]
        words += dna.items("keywords")[:6]
    return list(dict.fromkeys(w.strip() for w in words if w.strip() and len(w) <= 50))


def offline_topics(
    persona: Persona, month: str, *, dna: BrandDNA | None = None, count: int = 4, seed: int = 0
) -> list[TopicDraft]:
    if not 1 <= count <= 20:
        raise InvalidInput(f"count must be 1-20, got {count}")
    _, mon = parse_month(month)
    niche = NICHES.get(persona.niche) or niche_for_hint(persona.niche)
    rng = _rng("topics", persona.id, month, seed)
    keywords = _keywords(persona, dna)
    rng.shuffle(keywords)
    angles = list(niche.angles)
    rng.shuffle(angles)
    season = SEASONS[mon]
    month_name = calendar.month_name[mon]
    drafts: list[TopicDraft] = []
    for i in range(count):
        kw = keywords[i % len(keywords)]
        pillar = PILLARS[(i + rng.randrange(len(PILLARS))) % len(PILLARS)] if i else "education"
        if pillar == "seasonal":
            title = f"{season.title()} edition: {angles[i % len(angles)].format(kw=kw)}"
        elif pillar == "product spotlight" and dna and dna.items("products"):
            product = dna.items("products")[i % len(dna.items("products"))].split(" - ")[0]
            title = f"Why {product} earns its place in my {kw} routine"
        else:
            title = angles[i % len(angles)].format(kw=kw)
        title = title[:1].upper() + title[1:]
        if title.lower() in {d.title.lower() for d in drafts}:
            title = f"{title} ({month_name} notes)"
        article = "an" if pillar[0] in "aeiou" else "a"
        brand_bit = f" for {dna.brand}'s audience" if dna else ""
        angle = (
            f"{persona.name} shares {article} {pillar} piece on {kw}{brand_bit} (voice: {persona.tone}), "
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
    offline = offline_topics(persona, month, dna=dna, count=count, seed=seed)
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
            source=source,
        )
        for d in drafts
    ]
    return TopicsOutcome(topics, result, reason)
