"""Social posts derived from a blog post, one per platform, always within the platform's rules.

A model (prompt ``social_posts.v<N>``) or the offline rules write a caption per platform; then
the rules in ``contentforge/text/platform_rules.yaml`` are enforced here, never trusted: inline
hashtags move to the tag list, tags are cleaned and capped, emoji are trimmed to the maximum or
topped up to the minimum, the first line and the whole caption are trimmed at word boundaries
(X counted by weight). A caption that still breaks a rule is replaced by the offline caption for
that platform, which is built to pass ``check_caption``; nothing invalid is returned.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

from contentforge.domain.models import Persona, Platform
from contentforge.domain.strategy import BlogPost, SocialPost, SocialPostDraft, SocialPostDrafts, Topic
from contentforge.errors import ContentForgeError, InvalidInput
from contentforge.quality.gate import GateResult, check_text, remove_engagement_bait
from contentforge.strategy.blog import is_brief
from contentforge.text.platform_rules import (
    EMOJI_RE,
    PlatformRules,
    check_caption,
    count_emoji,
    rules_for,
    strip_emoji,
    trim_text,
)
from contentforge.text.prompt_library import load_prompt
from contentforge.text.providers.protocol import StructuredResult, TextProvider

log = logging.getLogger(__name__)
NICHE_EMOJI = {
    "fitness": "💪🏃🔥⚡🏋️", "wellness": "🌿🧘✨🍵🌙", "fashion": "👗✨🖤👟🧥", "beauty": "💄✨🌸💅🧴",
    "travel": "✈️🌍🧳🌅🗺️", "food": "🍳☕🥗🍞😋", "tech": "💻⚙️🚀🤖📱", "business": "📈💼🤝🎯💡",
    "outdoors": "🏔️🌲⛺🥾🌄", "lifestyle": "✨🏡☀️📚🌱",
}  # fmt: skip
_INLINE_TAG_RE = re.compile(r"(?<![\w&#])#(\w*[^\W\d_]\w*)")


def _emoji_pool(niche: str) -> list[str]:
    return EMOJI_RE.findall(NICHE_EMOJI.get(niche, NICHE_EMOJI["lifestyle"]))


def _tags(words: list[str], limit: int) -> list[str]:
    tags: list[str] = []
    for word in words:
        parts = word.lstrip("#").split()
        joined = "".join([parts[0], *(p[:1].upper() + p[1:] for p in parts[1:])]) if parts else ""
        tag = re.sub(r"[^\w]", "", joined)[:30]  # "traceable sourcing" -> "traceableSourcing"
        if tag and re.match(r"^\w*[^\W\d_]\w*$", tag) and tag.lower() not in {t.lower() for t in tags}:
            tags.append(tag)
    return tags[:limit]


def _takeaway(post: BlogPost) -> str:
    """The first real sentence of the post's introduction (or its first paragraph)."""
    for line in post.markdown.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ">", "*", "|", "-", "!")):
            sentence = re.split(r"(?<=[.!?])\s", line)[0]
            if len(sentence.split()) >= 5:
                return sentence
    return post.title


@dataclass(frozen=True)
class BriefFacts:
    """What a caption may say from an offline brief: its key points, product facts and CTA."""

    points: list[str]
    products: list[str]
    cta: str


_SOURCE_NOTE_RE = re.compile(r"\s*\((?:DNA|persona) `[^`]+`[^)]*\)\s*$")


def brief_facts(markdown: str) -> BriefFacts:
    """The facts of a brief (``contentforge.strategy.blog.offline_blog_brief``), source notes cut."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in markdown.splitlines():
        if line.startswith("## "):
            current = line[3:].strip().lower()
        elif line.strip():
            sections.setdefault(current, []).append(line.strip())

    def bullets(name: str) -> list[str]:
        return [
            _SOURCE_NOTE_RE.sub("", b[2:]).replace("**", "").strip()
            for b in sections.get(name, [])
            if b.startswith("- ")
        ]

    points = [p for p in bullets("key points") if "voice" not in p.lower()]
    cta = next((_SOURCE_NOTE_RE.sub("", c) for c in sections.get("call to action", [])), "")
    return BriefFacts(points=points, products=bullets("product facts"), cta=cta)


def fit_to_rules(draft: SocialPostDraft, rules: PlatformRules, niche: str) -> SocialPostDraft | None:
    """The draft trimmed and topped up to ``rules`` (see the module docstring); ``None`` when it has no
    words to keep (emoji or hashtags alone are not a caption)."""
    text = "\n\n".join(" ".join(part.split()) for part in draft.text.split("\n\n") if part.strip())
    inline = _INLINE_TAG_RE.findall(text)
    text = _INLINE_TAG_RE.sub("", text)
    text = "\n\n".join(" ".join(p.split()) for p in text.split("\n\n") if p.strip())
    hashtags = _tags([*draft.hashtags, *inline], rules.max_hashtags)
    if not strip_emoji(text).strip(" .…-"):
        return None
    # emoji: keep at most emoji_max, add up to emoji_min at the end of the first line
    found = EMOJI_RE.findall(text)
    if len(found) > rules.emoji_max:
        keep = set(range(rules.emoji_max))
        counter = iter(range(len(found)))
        text = EMOJI_RE.sub(lambda m: m.group(0) if next(counter) in keep else "", text)
        text = "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))
    lines = text.split("\n\n") if text else [""]
    missing = rules.emoji_min - count_emoji(text)
    if missing > 0:
        pool = [e for e in _emoji_pool(niche) if e not in text] or _emoji_pool(niche)
        lines[0] = (lines[0] + " " + "".join(pool[:missing])).strip()
    # first line within hook_max_chars, keeping its emoji at the end
    first = lines[0]
    if rules.measure(first) > rules.hook_max_chars:
        emoji = "".join(EMOJI_RE.findall(first))
        room = rules.hook_max_chars - rules.measure(" " + emoji if emoji else "")
        lines[0] = (
            trim_text(strip_emoji(first), room, rules.measure) + (" " + emoji if emoji else "")
        ).strip()
    fitted = SocialPostDraft(platform=rules.platform, text="\n\n".join(lines), hashtags=hashtags)

    def length(d: SocialPostDraft) -> int:
        tags = " ".join(f"#{t}" for t in d.hashtags)
        return rules.measure(d.text + ("\n\n" + tags if tags else ""))

    while length(fitted) > rules.max_chars and fitted.hashtags:
        fitted = fitted.model_copy(update={"hashtags": fitted.hashtags[:-1]})
    while length(fitted) > rules.max_chars and len(lines) > 1:
        # drop or shorten the middle/last paragraphs, never the first line
        last = lines.pop()
        over = length(fitted) - rules.max_chars
        shorter = trim_text(strip_emoji(last), rules.measure(last) - over - 2, rules.measure)
        if len(shorter.split()) >= 3:
            lines.append(shorter)
        fitted = fitted.model_copy(update={"text": "\n\n".join(lines)})
    return fitted


def offline_social_post(
    post: BlogPost, persona: Persona, topic: Topic | None, platform: Platform
) -> SocialPostDraft:
    rules = rules_for(platform)
    digest = int(hashlib.sha256(f"{post.id}|{platform}".encode()).hexdigest()[:8], 16)
    interest = persona.interests[digest % len(persona.interests)]
    cta = rules.calls_to_action[digest % len(rules.calls_to_action)].format(
        category=persona.niche, interest=interest, name=persona.name
    )
    pool = _emoji_pool(persona.niche)
    emoji = "".join(pool[(digest + i) % len(pool)] for i in range(rules.emoji_min or min(1, rules.emoji_max)))
    hook = f"{post.title} {emoji}".strip()
    body = f"New on the blog: {_takeaway(post)}"
    if is_brief(post.markdown):
        # a brief is not a post to link to: the caption carries the brief's own facts and its CTA
        facts = brief_facts(post.markdown)
        subject = (topic.keywords[0] if topic and topic.keywords else "").lower()
        fact = next((f for f in facts.products if f.lower().startswith(subject)), None) if subject else None
        fact = fact or next(iter(facts.points + facts.products), "")
        parts = [hook, fact, facts.cta or cta] if fact else [hook, facts.cta or cta]
    elif platform in (Platform.x, Platform.threads):
        parts = [hook, cta]
    else:
        pointer = (
            "Full post linked in the comments."
            if platform == Platform.linkedin
            else "Link in bio for the full post."
        )
        parts = [hook, body, pointer, cta]
    keywords = [*(topic.keywords if topic else []), persona.niche, *persona.interests]
    draft = SocialPostDraft(
        platform=platform, text="\n\n".join(parts), hashtags=_tags(keywords, rules.hashtag_count)
    )
    fitted = fit_to_rules(draft, rules, persona.niche)
    if fitted is None:  # the call to action always has words; this guards the rules file itself
        raise InvalidInput(f"{platform.value}: the offline post for {post.id} has no words to keep")
    return fitted


def check_social(draft: SocialPostDraft, post: BlogPost) -> GateResult:
    """The quality gate on a caption: platform rules, no bait or slots, prices only from its post."""
    return check_text(
        draft.text, "social", platform=draft.platform, hashtags=draft.hashtags, source_text=post.markdown
    )


def _rules_line(r: PlatformRules) -> str:
    weighted = " (X weighted count: URLs 23, emoji 2)" if r.weighted else ""
    return (
        f"- {r.platform.value}: caption at most {r.max_chars} characters{weighted}, first line at most "
        f"{r.hook_max_chars}, {r.emoji_min}-{r.emoji_max} emoji, {r.hashtag_count} hashtags "
        f"(max {r.max_hashtags}), tone {r.tone}"
    )


@dataclass(frozen=True)
class SocialOutcome:
    posts: list[SocialPost]
    result: StructuredResult[SocialPostDrafts] | None = None
    offline_platforms: list[Platform] | None = None
    fallback_reason: str | None = None


def derive_social_posts(
    post: BlogPost,
    persona: Persona,
    platforms: list[Platform | str],
    provider: TextProvider | None,
    *,
    topic: Topic | None = None,
) -> SocialOutcome:
    """One valid post per platform, derived from ``post``."""
    if not platforms:
        raise InvalidInput("give at least one platform")
    wanted = [Platform(rules_for(p).platform) for p in platforms]
    offline = {p: offline_social_post(post, persona, topic, p) for p in wanted}
    chosen: dict[Platform, SocialPostDraft] = dict(offline)
    from_model: set[Platform] = set()
    result, reason = None, None
    source: dict[str, object] = {"provider": "offline", "model": "offline-rules", "prompt_version": None}
    if provider is not None:
        template = load_prompt("social_posts")
        rules_text = "\n".join(_rules_line(rules_for(p)) for p in wanted)
        system, user = template.render(
            name=persona.name, tone=persona.tone, niche=persona.niche, title=post.title,
            post=post.markdown[:12000], rules=rules_text, platforms=", ".join(p.value for p in wanted),
        )  # fmt: skip
        try:
            result = provider.generate_structured(
                user, SocialPostDrafts, system=system, max_tokens=2500, temperature=0.7,
                prompt_version=template.id, context={"posts": list(offline.values())},
            )  # fmt: skip
            source = {
                "provider": result.provider, "model": result.result.model, "prompt_version": template.id,
                "cost_usd": result.result.cost_usd,
            }  # fmt: skip
            for draft in result.value.posts:
                if draft.platform not in chosen or draft.platform in from_model:
                    continue
                rules = rules_for(draft.platform)
                # engagement bait is rewritten out (the honest rest of the CTA stays) before fitting
                honest = remove_engagement_bait(draft.text)
                fitted = fit_to_rules(
                    draft.model_copy(update={"text": honest or draft.text}), rules, persona.niche
                )
                if fitted is not None and check_social(fitted, post).passed:
                    chosen[draft.platform] = fitted
                    from_model.add(draft.platform)
        except ContentForgeError as exc:
            log.warning("no model wrote social posts for %s (%s); using the offline rules", post.id, exc)
            reason = str(exc)
    posts: list[SocialPost] = []
    for platform in wanted:
        draft = chosen[platform]
        problems = check_caption(draft.text, draft.hashtags, platform)
        if problems:  # the offline caption is built to pass; this guards the rules file itself
            raise InvalidInput(f"{platform.value} caption breaks the platform rules: {'; '.join(problems)}")
        gate = check_social(draft, post)
        if platform not in from_model and provider is not None and result is not None:
            gate.status = "fallback"  # the model's caption failed the rules or the gate
        if not gate.passed:
            gate.status = "needs_review"  # never published as if it passed
        posts.append(
            SocialPost(
                **draft.model_dump(),
                blog_post_id=post.id,
                persona_id=persona.id,
                source={
                    **(
                        source
                        if platform in from_model
                        else {"provider": "offline", "model": "offline-rules"}
                    ),
                    "quality_gate": gate.as_dict(),
                },
            )
        )
    return SocialOutcome(posts, result, [p for p in wanted if p not in from_model], reason)
