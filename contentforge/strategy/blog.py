# ruff: noqa: E501  (sentence banks are prose data; one sentence per line reads best)
"""Blog posts of 4-10 A4 pages (about 500 words a page) in Markdown from an approved topic.

With a model in the chain, prompt ``blog_post.v<N>`` asks for the post; ``BlogPostDraft`` checks
the length and the section structure, so a too-short answer is repaired once and then falls back.
Offline, a structured post is composed from the topic, the persona and the brand DNA: an
introduction, why it matters (the brand's mission and values when known), the basics, a
step-by-step guide, common mistakes, where the brand's products fit, a one-week plan, a checklist,
an FAQ and a conclusion. Sentences come from template banks filled with the topic's keywords and
the persona's interests, chosen by a seeded RNG, and sections are added until the target length is
reached; the same inputs always give the same post.
"""

from __future__ import annotations

import hashlib
import logging
import random
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
from contentforge.text.prompt_library import load_prompt
from contentforge.text.providers.protocol import StructuredResult, TextProvider

log = logging.getLogger(__name__)

EXPLAIN = (
    "At its core, {kw} is about small decisions repeated often enough that they start to feel natural.",
    "Most people meet {kw} through a headline or a friend's recommendation, and only later discover how much nuance sits underneath.",
    "The short version is that {kw} rewards consistency far more than intensity.",
    "It helps to think of {kw} as a practice rather than a project with a finish line.",
    "When you strip away the jargon, {kw} comes down to three questions: what you want, what you have, and what you are willing to change.",
    "There is no single right way to approach {kw}, but there are plenty of ways to make it harder than it needs to be.",
    "A useful rule of thumb is to start with the version of {kw} you could still manage on your worst week.",
    "The research and the lived experience tend to agree here: {kw} works best when it fits around a real life.",
    "What surprises most beginners is how much of {kw} happens before anything visible changes.",
    "If {kw2} is already part of your routine, you have a head start, because the habits overlap more than you might expect.",
)  # fmt: skip
EXAMPLE = (
    "Last {season}, I tried a stripped-back version of {kw} for a month and kept notes every evening.",
    "A reader once asked me how I fit {kw} around {interest}, and the honest answer was: badly, at first.",
    "Picture a Tuesday where everything runs late; that is exactly the day your {kw} plan has to survive.",
    "One of the best conversations I had about {kw} started with someone admitting they had quit three times.",
    "The turning point for me was noticing that {interest} and {kw} could share the same slot in my day.",
    "When I shared my first attempt at {kw} with my community, the most useful replies were the skeptical ones.",
    "I still remember the first time {kw} felt easy, and it had nothing to do with new gear or a new plan.",
)  # fmt: skip
TIP = (
    "Write down one measurable thing you will do for {kw} this week, and nothing more.",
    "Pair {kw} with something you already do every day, so the cue is built in.",
    "Keep a two-line log: what you did for {kw}, and how it felt; patterns show up within a fortnight.",
    "Plan for the bad days by deciding in advance what the minimum version of {kw} looks like.",
    "Ask one person to check in with you about {kw} on Sundays; accountability is a surprisingly strong tool.",
    "Spend your budget on the parts of {kw} you touch every day, and save on the parts you touch once a season.",
    "Review your {kw} routine at the end of each month and drop the step you skipped most often.",
    "Give yourself a clear start and stop time; open-ended sessions are the first to be cancelled.",
)  # fmt: skip
REFLECT = (
    "None of this needs to be perfect to be worth doing.",
    "Progress here is rarely linear, and that is fine.",
    "The point is not to copy my routine but to build one that fits yours.",
    "If a step does not serve you, change it; the principle matters more than the detail.",
    "Small, boring and repeatable beats ambitious and abandoned every time.",
    "Be patient with the first few weeks; they are doing more work than they seem to.",
)  # fmt: skip
MISTAKES = (
    ("Doing too much too soon", "Enthusiasm is a great start and a poor plan; scale {kw} up slowly."),
    ("Copying someone else's routine", "What works for a full-time creator rarely fits a full-time job; adapt {kw} to your week."),
    ("Ignoring the basics", "The unglamorous fundamentals of {kw} carry most of the results."),
    ("Buying before learning", "New gear feels like progress, but understanding {kw} first saves money and frustration."),
    ("Skipping rest and review", "Without a pause to look back, you repeat the same {kw} mistakes for months."),
    ("Measuring the wrong thing", "Pick one signal that matters for {kw} and stop chasing the rest."),
)  # fmt: skip
FAQ = (
    ("How long before I notice a difference with {kw}?", "Most people notice something within three to four weeks if they stay consistent; bigger changes take a season."),
    ("Do I need special equipment for {kw}?", "Very little at the start. Begin with what you have and upgrade the one item you use most once you know you will stick with it."),
    ("What if I miss a week of {kw}?", "Start again with the minimum version. A missed week is a pause, not a reset."),
    ("Can I combine {kw} with {interest}?", "Yes, and it often helps: shared time slots and shared goals make both easier to keep."),
    ("Is {kw} worth it on a tight schedule?", "Especially then. Ten focused minutes, done often, beat an hour you never find."),
)  # fmt: skip
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DAY_PLANS = (
    "a short, easy session of {kw} to set the tone",
    "ten minutes of learning: read or watch one thing about {kw}",
    "the main session of the week, with {interest} as a reward afterwards",
    "rest, and a quick note on how the week is going",
    "a social version: invite a friend to join you for {kw}",
    "a longer, playful session where you try one new idea",
    "review the log, plan next week and prepare what you need",
)  # fmt: skip


def _rng(*parts: object) -> random.Random:
    return random.Random(
        int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")
    )


class _Writer:
    def __init__(self, topic: Topic, persona: Persona, dna: BrandDNA | None, seed: int) -> None:
        self.rng = _rng("blog", topic.id, persona.id, seed)
        self.topic, self.persona, self.dna = topic, persona, dna
        self.keywords = list(dict.fromkeys([*topic.keywords, *persona.interests])) or [topic.title]
        self.used: set[str] = set()
        self.season = "season"

    def fill(self, template: str, kw: str | None = None) -> str:
        kw = kw or self.keywords[0]
        others = [k for k in self.keywords if k != kw] or [kw]
        return template.format(
            kw=kw,
            kw2=self.rng.choice(others),
            interest=self.rng.choice(self.persona.interests),
            season=self.season,
        )

    def pick(self, bank: tuple[str, ...], kw: str | None = None) -> str:
        fresh = [t for t in bank if (t, kw) not in self.used] or list(bank)
        choice = self.rng.choice(fresh)
        self.used.add((choice, kw))  # type: ignore[arg-type]
        return self.fill(choice, kw)

    def paragraph(self, kw: str, shape: tuple[tuple[str, ...], ...]) -> str:
        return " ".join(self.pick(bank, kw) for bank in shape)


def _brand_section(w: _Writer, dna: BrandDNA) -> list[str]:
    lines = [f"## Where {dna.brand} fits in", ""]
    mission = dna.text("mission")
    values = dna.items("values")
    products = [p.split(" - ")[0] for p in dna.items("products")]
    kw = w.keywords[0]
    text = []
    if mission:
        text.append(f'{dna.brand} describes its mission as: "{mission.rstrip(".")}."')
        text.append(f"That lines up with how I think about {kw}: the goal is something you can sustain.")
    if values:
        text.append(f"The values it names ({', '.join(values[:4])}) are a good filter for any {kw} decision.")
    if not text:
        text.append(
            f"I work with {dna.brand} because its approach to {kw} matches the way I like to do things."
        )
    text.append(w.pick(REFLECT, kw))
    lines += [" ".join(text), ""]
    if products:
        lines += [f"A few things from {dna.brand} that I actually use for {kw}:", ""]
        for product in products[:5]:
            lines.append(f"- **{product}**: {w.pick(TIP, kw)}")
        lines.append("")
    return lines


def offline_blog_post(
    topic: Topic, persona: Persona, dna: BrandDNA | None = None, *, target_pages: int = 5, seed: int = 0
) -> BlogPostDraft:
    """A complete Markdown post of about ``target_pages`` A4 pages (within 4-10)."""
    if not BLOG_MIN_PAGES <= target_pages <= BLOG_MAX_PAGES:
        raise InvalidInput(f"target_pages must be {BLOG_MIN_PAGES}-{BLOG_MAX_PAGES}, got {target_pages}")
    w = _Writer(topic, persona, dna, seed)
    from contentforge.strategy.topics import SEASONS

    w.season = SEASONS[int(topic.month[5:7])]
    target = target_pages * WORDS_PER_PAGE
    kw = w.keywords[0]
    std = (EXPLAIN, EXAMPLE, TIP, REFLECT)
    out: list[str] = [f"# {topic.title}", "", f"*By {persona.name} · {topic.pillar} · {topic.month}*", ""]
    out += [
        f"> {topic.angle}",
        "",
        "## Introduction",
        "",
        w.paragraph(kw, (EXAMPLE, EXPLAIN, EXPLAIN, REFLECT)),
        "",
        f"In this post I walk through why {kw} matters, the basics, a step-by-step plan, the mistakes I see most, "
        f"a one-week plan you can start on Monday, and answers to the questions I get asked most.",
        "",
        f"## Why {kw} matters",
        "",
        w.paragraph(kw, (EXPLAIN, EXPLAIN, EXAMPLE, REFLECT)),
        "",
    ]
    if dna is not None and dna.audience_segments.known:
        out += [
            f"If you are one of the {', '.join(dna.items('audience_segments')[:3])} reading this, this part is for you. "
            + w.pick(TIP, kw),
            "",
        ]
    out += ["## The basics", ""]
    for k in w.keywords[:3]:
        out += [f"### {k[:1].upper() + k[1:]}", "", w.paragraph(k, (EXPLAIN, EXPLAIN, TIP, REFLECT)), ""]
    out += ["## A step-by-step guide", ""]
    for i in range(1, 7):
        out += [
            f"{i}. **Step {i}.** " + w.paragraph(w.keywords[(i - 1) % len(w.keywords)], (TIP, EXPLAIN)),
            "",
        ]
    out += ["## Common mistakes (and what to do instead)", ""]
    for title, fix in w.rng.sample(MISTAKES, k=5):
        out += [f"### {title}", "", w.fill(fix, kw) + " " + w.paragraph(kw, (EXAMPLE, TIP)), ""]
    if dna is not None:
        out += _brand_section(w, dna)
    out += ["## A one-week plan", "", "| day | what to do |", "|---|---|"]
    for day, plan in zip(DAYS, DAY_PLANS, strict=True):
        out.append(f"| {day} | {w.fill(plan, kw)} |")
    out += ["", w.paragraph(kw, (TIP, REFLECT)), ""]
    tail = ["## Checklist", ""]
    tail += [f"- [ ] {w.pick(TIP, w.keywords[i % len(w.keywords)])}" for i in range(6)]
    tail += ["", "## Frequently asked questions", ""]
    for question, answer in FAQ:
        tail += [f"**{w.fill(question, kw)}**", "", w.fill(answer, kw) + " " + w.pick(REFLECT, kw), ""]
    cta = (
        dna.items("calls_to_action")[0]
        if dna is not None and dna.calls_to_action.known
        else "Share your own experience"
    )
    tail += [
        "## Conclusion",
        "",
        w.paragraph(kw, (EXPLAIN, REFLECT)),
        f"{cta} — and tell me in the comments how your first week of {kw} goes. I read every one.",
        "",
    ]
    # deeper sections until the post reaches the target length (about 170 words each)
    extra = 0
    goal = min(max(target, BLOG_MIN_PAGES * WORDS_PER_PAGE + 60), BLOG_MAX_PAGES * WORDS_PER_PAGE - 250)
    while count_words("\n".join(out + tail)) < goal and extra < 40:
        k = w.keywords[extra % len(w.keywords)]
        heading = (
            f"## Going deeper: {k}"
            if extra < len(w.keywords)
            else f"## More on {k}, part {extra // len(w.keywords) + 1}"
        )
        out += [
            heading,
            "",
            w.paragraph(k, std),
            "",
            w.paragraph(k, (EXAMPLE, EXPLAIN, TIP, TIP, REFLECT)),
            "",
        ]
        extra += 1
    out += tail
    return BlogPostDraft(title=topic.title, markdown="\n".join(out))


def blog_post_id(topic_id: str) -> str:
    return f"post-{slugify(topic_id)[:50]}"


@dataclass(frozen=True)
class BlogOutcome:
    post: BlogPost
    result: StructuredResult[BlogPostDraft] | None = None
    fallback_reason: str | None = None


def write_blog_post(
    topic: Topic,
    persona: Persona,
    provider: TextProvider | None,
    *,
    dna: BrandDNA | None = None,
    target_pages: int = 5,
    seed: int = 0,
) -> BlogOutcome:
    """A draft post for ``topic`` (status ``proposed`` until approved)."""
    offline = offline_blog_post(topic, persona, dna, target_pages=target_pages, seed=seed)
    draft, result, reason = offline, None, None
    source: dict[str, object] = {"provider": "offline", "model": "offline-rules", "prompt_version": None}
    if provider is not None:
        template = load_prompt("blog_post")
        facts = "\n".join(f"- {n}: {dna.field(n).display()}" for n in dna.known_fields()) if dna else "- none"
        system, user = template.render(
            name=persona.name, tone=persona.tone, niche=persona.niche, interests=", ".join(persona.interests),
            title=topic.title, angle=topic.angle, pillar=topic.pillar, keywords=", ".join(topic.keywords),
            pages=target_pages, words=target_pages * WORDS_PER_PAGE, min_words=BLOG_MIN_PAGES * WORDS_PER_PAGE,
            max_words=BLOG_MAX_PAGES * WORDS_PER_PAGE, brand=dna.brand if dna else "(no brand)", dna=facts,
        )  # fmt: skip
        try:
            result = provider.generate_structured(
                user, BlogPostDraft, system=system, max_tokens=9000, temperature=0.7,
                prompt_version=template.id, context={"title": offline.title, "markdown": offline.markdown},
            )  # fmt: skip
            draft = result.value
            source = {
                "provider": result.provider,
                "model": result.result.model,
                "prompt_version": template.id,
                "cost_usd": result.result.cost_usd,
                "tokens": result.result.input_tokens + result.result.output_tokens,
                "repaired": result.repaired,
            }
        except ContentForgeError as exc:
            log.warning("no model wrote the post for topic %s (%s); using the offline writer", topic.id, exc)
            reason = str(exc)
    post = BlogPost(
        id=blog_post_id(topic.id),
        topic_id=topic.id,
        persona_id=persona.id,
        title=draft.title,
        markdown=draft.markdown,
        source={**source, "words": count_words(draft.markdown)},
    )
    return BlogOutcome(post, result, reason)
