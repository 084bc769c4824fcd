"""Blog posts of 4-10 A4 pages (about 500 words a page) in Markdown from an approved topic: a model's
draft, or offline a labelled brief for a writer or a model.

With a model in the chain, prompt ``blog_post.v<N>`` asks for the post; ``BlogPostDraft`` checks
the length and the section structure, so a too-short answer is repaired once. Offline, nothing
pretends to be a finished post: ``offline_blog_brief`` writes a clearly labelled BRIEF from the
topic, the persona and the brand's DNA only (the angle, key points each with the DNA field it comes
from, the product facts as stated, suggested sections with bullet notes, an honest call to action,
and what a writer or a model should do next). Every result goes through the quality gate
(``contentforge.quality.gate``); its verdict is stored in ``source["quality_gate"]``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from contentforge.domain.models import Persona, slugify
from contentforge.domain.strategy import (
    BLOG_MAX_PAGES,
    BLOG_MIN_PAGES,
    WORDS_PER_PAGE,
    BlogPost,
    BlogPostDraft,
    BrandDNA,
    Topic,
    count_words,
)
from contentforge.errors import ContentForgeError, InvalidInput
from contentforge.quality.facts import Product, split_product
from contentforge.quality.gate import GateResult, check_text, remove_engagement_bait
from contentforge.text.prompt_library import load_prompt
from contentforge.text.providers.protocol import StructuredResult, TextProvider

log = logging.getLogger(__name__)

BRIEF_MARKER = "BRIEF, not a finished post"
NEEDS_MODEL = (
    "A full 4-10 page draft needs a model: configure one in CONTENTFORGE_TEXT_PROVIDERS "
    "(anthropic, openai or a local OpenAI-compatible server) and write the post again, "
    "or have a writer turn this brief into the post and paste it when approving."
)


def is_brief(markdown: str) -> bool:
    """Whether ``markdown`` is an offline brief (a reviewer may have pasted a written post over it)."""
    return markdown.startswith(f"# {BRIEF_MARKER}")


def _possessive(name: str | None) -> str:
    return "" if not name else f"{name}'" if name.endswith("s") else f"{name}'s"


def _sourced(dna: BrandDNA, name: str) -> str:
    where = dna.field(name).source or "?"
    return f"(DNA `{name}`, {where})"


def offline_blog_brief(
    topic: Topic, persona: Persona, dna: BrandDNA | None = None, *, target_pages: int = 5
) -> str:
    """A Markdown brief for ``topic``, every fact in it taken from ``dna`` with its field named."""
    if not BLOG_MIN_PAGES <= target_pages <= BLOG_MAX_PAGES:
        raise InvalidInput(f"target_pages must be {BLOG_MIN_PAGES}-{BLOG_MAX_PAGES}, got {target_pages}")
    subject = topic.keywords[0] if topic.keywords else topic.title
    brand = dna.brand if dna else None
    out = [
        f"# {BRIEF_MARKER}: {topic.title}",
        "",
        f"> **{BRIEF_MARKER}.** {NEEDS_MODEL}",
        "",
        f"*For {persona.name} ({persona.niche}) · {topic.pillar} · {topic.month} · "
        f"target {target_pages} A4 pages, about {target_pages * WORDS_PER_PAGE} words*",
        "",
        "## Angle",
        "",
        topic.angle,
        "",
        "## Key points",
        "",
    ]
    points: list[str] = []
    products = [split_product(p) for p in (dna.items("products") if dna else [])]
    if dna is not None:
        lines = {
            "mission": f'The mission in {_possessive(brand)} words: "{dna.text("mission").rstrip(".")}."',
            "values": f"The values {brand} names: {dna.text('values')}",
            "audience_segments": f"Who it is for: {dna.text('audience_segments')}",
            "unique_selling_points": f"What sets {brand} apart: {dna.text('unique_selling_points')}",
            "tone_of_voice": f"Write in {_possessive(brand)} stated voice: {dna.text('tone_of_voice')}",
        }
        points += [f"- {line} {_sourced(dna, name)}" for name, line in lines.items() if dna.field(name).known]
    points.append(f"- The persona's voice: {persona.tone} (persona `{persona.id}`)")
    out += [*points, ""]
    if products:
        out += ["## Product facts", "", "As the brand states them; quote no other price or claim.", ""]
        for product in products:
            price = ", ".join(f"{p:g}" for p in product.prices)
            details = f": {product.details}" if product.details else ""
            out.append(
                f"- **{product.name}**{details}"
                + ("" if not price or product.details else f" (price {price})")
            )
        out += [f"{_sourced(dna, 'products')}", ""]  # type: ignore[arg-type]
    out += ["## Suggested sections", ""]
    out += _sections(topic, persona, dna, subject, products)
    out += ["## Call to action", "", _cta(dna, products), ""]
    out += [
        "## What to do next",
        "",
        "- Get the full post written: see the note at the top (a model, or a writer).",
        "- Keep every price, product name and claim to the facts above: the quality gate flags the rest.",
        "- Ask for no likes, comments, shares or tags for their own sake: end on the call to action.",
        "",
    ]
    return "\n".join(out)


def _sections(
    topic: Topic, persona: Persona, dna: BrandDNA | None, subject: str, products: list[Product]
) -> list[str]:
    brand = dna.brand if dna else persona.name
    audience = dna.items("audience_segments")[:2] if dna else []
    readers = ", ".join(audience) or "the reader"
    lines = [
        "### Introduction",
        f"- Open with why {subject} matters to {readers}.",
        f"- Say in one line what the post covers: {topic.title}.",
        "",
        f"### {subject[:1].upper() + subject[1:]}: the essentials",
        f"- Explain {subject} plainly; {persona.name} speaks from experience, in {persona.tone}.",
    ]
    if dna is not None and dna.mission.known:
        lines.append(f"- Tie it to {_possessive(brand)} mission (key points above).")
    lines.append("")
    if products:
        lines += [f"### Where {_possessive(brand)} products fit"]
        lines += [f"- {p.name}: what it is and when to use it (product facts above)." for p in products[:4]]
        lines.append("")
    if dna is not None and dna.values.known:
        lines += [
            f"### What {brand} stands for",
            f"- One example for each value: {', '.join(dna.items('values')[:4])}.",
            "",
        ]
    lines += [
        "### Step by step",
        f"- Practical steps a reader can follow this month; each step concrete, none invented about {brand}.",
        "",
        "### Conclusion",
        "- Sum up in three lines and end on the call to action.",
        "",
    ]
    return lines


def _cta(dna: BrandDNA | None, products: list[Product]) -> str:
    if dna is not None and dna.calls_to_action.known:
        honest = [c for c in dna.items("calls_to_action") if remove_engagement_bait(c) == c]
        if honest:
            return f"{honest[0]} {_sourced(dna, 'calls_to_action')}"
    if dna is not None and products:
        name = products[0].name
        return f"Find {'the ' + name[4:] if name.startswith('The ') else name} at {dna.brand}" + (
            f" ({dna.text('website')})." if dna.website.known else "."
        )
    return "Try one step from this post this week."


def check_post(markdown: str, dna: BrandDNA | None, persona: Persona, kind: str) -> GateResult:
    """The gate on a draft or brief: names the brand (or persona), nothing repeated or untraceable."""
    names = [dna.brand] if dna else [persona.name]
    return check_text(markdown, "brief" if kind == "brief" else "blog", dna=dna, must_name=names)


def blog_post_id(topic_id: str) -> str:
    return f"post-{slugify(topic_id)[:50]}"


@dataclass(frozen=True)
class BlogOutcome:
    post: BlogPost
    result: StructuredResult[BlogPostDraft] | None = None
    fallback_reason: str | None = None


def _offline_only(provider: TextProvider) -> bool:
    """A chain of only the offline engine (no model configured): it writes no post, so the brief is
    the answer and there is nothing to warn about."""
    names = getattr(provider, "names", None)  # ProviderChain.names, a property
    listed = list(names) if isinstance(names, list) else [getattr(provider, "name", "")]
    return bool(listed) and all(name == "offline" for name in listed)


def write_blog_post(
    topic: Topic,
    persona: Persona,
    provider: TextProvider | None,
    *,
    dna: BrandDNA | None = None,
    target_pages: int = 5,
    seed: int = 0,
) -> BlogOutcome:
    """A draft post for ``topic`` from a model, or offline a brief (status ``proposed`` until approved).

    The offline engine cannot answer for a post (no context is offered to it), so without a model
    the chain fails over to the brief, and ``fallback_reason`` says why.
    """
    brief = offline_blog_brief(topic, persona, dna, target_pages=target_pages)
    title, markdown, result, reason = topic.title, brief, None, None
    source: dict[str, object] = {
        "provider": "offline", "model": "offline-rules", "prompt_version": None, "kind": "brief",
        "needs_model": True, "note": f"{BRIEF_MARKER}. {NEEDS_MODEL}",
    }  # fmt: skip
    if provider is not None and not _offline_only(provider):
        template = load_prompt("blog_post")
        facts = "\n".join(f"- {n}: {dna.field(n).display()}" for n in dna.known_fields()) if dna else "- none"
        system, user = template.render(
            name=persona.name, tone=persona.tone, niche=persona.niche, interests=", ".join(persona.interests),
            title=topic.title, angle=topic.angle, pillar=topic.pillar, keywords=", ".join(topic.keywords),
            pages=target_pages, words=target_pages * WORDS_PER_PAGE,
            min_words=BLOG_MIN_PAGES * WORDS_PER_PAGE,
            max_words=BLOG_MAX_PAGES * WORDS_PER_PAGE, brand=dna.brand if dna else "(no brand)", dna=facts,
        )  # fmt: skip
        try:
            result = provider.generate_structured(
                user, BlogPostDraft, system=system, max_tokens=9000, temperature=0.7,
                prompt_version=template.id,
            )  # fmt: skip
            title, markdown = result.value.title, result.value.markdown
            source = {
                "provider": result.provider,
                "model": result.result.model,
                "prompt_version": template.id,
                "cost_usd": result.result.cost_usd,
                "tokens": result.result.input_tokens + result.result.output_tokens,
                "repaired": result.repaired,
                "kind": "draft",
            }
        except ContentForgeError as exc:
            log.warning("no model wrote the post for topic %s (%s); writing the offline brief", topic.id, exc)
            reason = str(exc)
    gate = check_post(markdown, dna, persona, str(source["kind"]))
    if not gate.passed:
        # a model draft is not thrown away for a flag: a reviewer sees the gate's findings with it
        gate.status = "needs_review"
    post = BlogPost(
        id=blog_post_id(topic.id),
        topic_id=topic.id,
        persona_id=persona.id,
        title=title,
        markdown=markdown,
        source={**source, "words": count_words(markdown), "quality_gate": gate.as_dict()},
    )
    return BlogOutcome(post, result, reason)
