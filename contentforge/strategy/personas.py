"""Persona candidates from a brand's DNA, and standalone random personas with a type hint.

Offline, candidates are built by rules: the DNA's keywords, products, audience and industry are
matched against the niche catalog (``niches.py``), the best niches are spread over the candidates,
and each candidate draws its look, traits, tone, interests, platforms and time zone from that niche
with a seeded RNG, mixing in the brand's own keywords and products. The same DNA and seed always
give the same candidates. With a model in the chain, prompt ``personas.v<N>`` asks for them and the
offline candidates are the fallback (the offline engine answers from the request context).
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass

from contentforge.domain.models import Platform, slugify
from contentforge.domain.strategy import BrandDNA, PersonaCandidate, PersonaCandidates
from contentforge.errors import ContentForgeError, InvalidInput
from contentforge.strategy.niches import (
    AGES,
    DEFAULT_TIMEZONES,
    EYES,
    FIRST_NAMES,
    HAIR,
    NICHES,
    SURNAME_HINTS,
    TIMEZONES_BY_LANG,
    Niche,
    niche_for_hint,
    niche_scores,
)
from contentforge.text.prompt_library import load_prompt
from contentforge.text.providers.protocol import StructuredResult, TextProvider

log = logging.getLogger(__name__)
CANDIDATE_COUNT = 6


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def rank_niches(dna: BrandDNA) -> list[str]:
    """Niches by how well the DNA's words match them (industry counts triple); ties by catalog order."""
    words: list[str] = []
    for name in ("keywords", "products", "services", "audience_segments", "topics", "description", "tagline"):
        words += [w for item in dna.items(name) for w in item.lower().replace(",", " ").split()]
    scores = niche_scores(words)
    if industry := dna.text("industry").lower():
        for niche in NICHES:
            if niche in industry:
                scores[niche] += 3 * max(1, max(scores.values()))
    order = list(NICHES)
    return sorted(order, key=lambda n: (-scores[n], order.index(n)))


def _brand_interests(dna: BrandDNA, rng: random.Random) -> list[str]:
    pool = [p.split(" - ")[0].strip().lower() for p in dna.items("products")]
    pool += [k for k in dna.items("keywords") if len(k) > 3]
    pool = list(dict.fromkeys(p for p in pool if 2 < len(p) <= 40))
    rng.shuffle(pool)
    return pool[:2]


def _timezones(dna: BrandDNA | None) -> tuple[str, ...]:
    langs = dna.items("languages") if dna else []
    zones: list[str] = []
    for lang in langs:
        zones += TIMEZONES_BY_LANG.get(lang.lower()[:2], ())
    return tuple(dict.fromkeys(zones)) or DEFAULT_TIMEZONES


def _candidate(
    niche: Niche,
    rng: random.Random,
    *,
    name: str,
    timezone: str,
    extra_interests: list[str],
    brand_tone: str | None,
    brand: str | None,
) -> PersonaCandidate:
    age = rng.choice(AGES)
    look = rng.choice(niche.looks)
    appearance = f"{age}-year-old adult, {rng.choice(HAIR)}, {rng.choice(EYES)}, {look}"
    traits = rng.sample(niche.traits, k=3)
    interests = list(dict.fromkeys([*rng.sample(niche.interests, k=3), *extra_interests]))[:5]
    tone = rng.choice(niche.tones)
    if brand_tone:
        tone = f"{tone}; echoes the brand's voice ({brand_tone[:80]})"
    platforms = list(niche.platforms[:1]) + rng.sample(
        niche.platforms[1:], k=min(len(niche.platforms) - 1, rng.choice((1, 2)))
    )
    why = f"{niche.name} voice for {brand}" if brand else f"a {niche.name} persona"
    if extra_interests:
        why += f", talks about {', '.join(extra_interests)}"
    return PersonaCandidate(
        id=slugify(name),
        name=name,
        niche=niche.name,
        appearance=appearance,
        personality_traits=traits,
        interests=interests,
        tone=tone,
        platforms=platforms,
        timezone=timezone,
        age=age,
        rationale=why,
    )


def _names(rng: random.Random, count: int) -> list[str]:
    firsts = rng.sample(FIRST_NAMES, k=count)
    lasts = rng.sample(SURNAME_HINTS, k=count)
    return [f"{f} {s}" for f, s in zip(firsts, lasts, strict=True)]


def offline_candidates(
    dna: BrandDNA, *, count: int = CANDIDATE_COUNT, seed: int = 0
) -> list[PersonaCandidate]:
    """``count`` distinct, valid candidates from rules; deterministic for the same DNA and seed."""
    if not 1 <= count <= 12:
        raise InvalidInput(f"count must be 1-12, got {count}")
    rng = _rng("personas", dna.brand, seed)
    ranked = rank_niches(dna)
    top = ranked[: max(2, min(3, count // 2))]
    # the best niche gets the most candidates; one wildcard from outside the top keeps the set varied
    plan = [top[i % len(top)] for i in range(count - 1)] + [ranked[len(top) + rng.randrange(3)]]
    zones = _timezones(dna)
    tone = dna.text("tone_of_voice") or None
    candidates = []
    for i, (niche_name, name) in enumerate(zip(plan, _names(rng, count), strict=True)):
        candidates.append(
            _candidate(
                NICHES[niche_name],
                _rng("persona", dna.brand, seed, i),
                name=name,
                timezone=zones[i % len(zones)],
                extra_interests=_brand_interests(dna, _rng("interests", dna.brand, seed, i)),
                brand_tone=tone,
                brand=dna.brand,
            )
        )
    return PersonaCandidates(candidates=candidates).candidates


def random_persona(type_hint: str, *, seed: int | None = None) -> PersonaCandidate:
    """One persona of the niche ``type_hint`` names ("fitness", "tech", "fashion", ...)."""
    niche = niche_for_hint(type_hint)
    seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    rng = _rng("random-persona", niche.name, seed)
    name = _names(rng, 1)[0]
    return _candidate(
        niche,
        rng,
        name=name,
        timezone=rng.choice(DEFAULT_TIMEZONES),
        extra_interests=[],
        brand_tone=None,
        brand=None,
    )


@dataclass(frozen=True)
class CandidatesOutcome:
    candidates: list[PersonaCandidate]
    result: StructuredResult[PersonaCandidates] | None = None
    fallback_reason: str | None = None


def propose_personas(
    dna: BrandDNA, provider: TextProvider | None, *, count: int = CANDIDATE_COUNT, seed: int = 0
) -> CandidatesOutcome:
    """Candidates from the chain (prompt ``personas.v1``), or the offline rules."""
    offline = offline_candidates(dna, count=count, seed=seed)
    if provider is None:
        return CandidatesOutcome(offline)
    template = load_prompt("personas")
    platforms = ", ".join(p.value for p in Platform)
    dna_lines = "\n".join(f"- {n}: {dna.field(n).display()}" for n in dna.known_fields())
    system, user = template.render(
        brand=dna.brand, count=count, dna=dna_lines or "- (nothing known)", platforms=platforms
    )
    try:
        answer = provider.generate_structured(
            user,
            PersonaCandidates,
            system=system,
            max_tokens=3000,
            temperature=0.9,
            prompt_version=template.id,
            context={"candidates": offline},
        )
    except ContentForgeError as exc:
        log.warning("no model proposed personas for %s (%s); using the offline rules", dna.brand, exc)
        return CandidatesOutcome(offline, fallback_reason=str(exc))
    got = answer.value.candidates
    if len(got) < count:
        got = list(got) + [c for c in offline if c.id not in {g.id for g in got}][: count - len(got)]
    return CandidatesOutcome(got[:count], answer)
