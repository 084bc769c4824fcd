"""Caption hooks: the ``HookWriter`` protocol and an offline writer built from a phrase bank.

The offline writer needs no network or model, so a batch always gets captions; a model-backed
writer can replace it behind the same protocol. Each call returns hooks in distinct styles,
composed from the persona (name, traits, interests, tone) and the template (scene, category,
pose, lighting, tags), and each hook fits its platform by construction: the call to action,
emoji and hashtags are sized first and the hook body is trimmed at a word boundary to the room
left. The result is deterministic for a seed and differs across templates and seeds.
"""

from __future__ import annotations

import random
import re
from typing import Protocol, runtime_checkable

from contentforge.domain.models import Hook, HookStyle, Persona, Platform, Template
from contentforge.errors import InvalidInput
from contentforge.text.platform_rules import PlatformRules, rules_for, strip_emoji, trim_text

_PHRASES: dict[HookStyle, tuple[str, ...]] = {
    HookStyle.question: (
        "What does your perfect {scene} look like?",
        "Would you swap your usual routine for {a_scene} like this?",
        "Who else plans their whole week around {interest}?",
        "{Scene} or a slow morning in: which one are you picking?",
        "What's the one thing that makes {category} click for you?",
        "Be honest: how often do you make time for {interest}?",
    ),
    HookStyle.challenge: (
        "{challenge} one {scene} this week, no excuses. Who's in?",
        "{challenge} trade ten minutes of scrolling for {interest} today.",
        "{challenge} recreate this {scene} in your own way this week.",
        "{challenge} seven days of {interest}, one small step a day.",
        "{challenge} plan your own {scene} before Sunday and tell me how it went.",
    ),
    HookStyle.story: (
        "{name} here: this {scene} started as a plan I almost cancelled.",
        "A year ago I'd never have tried {interest}. Now {a_scene} is my favourite part of the week.",
        "Behind the shot: {lighting}, one pose ({pose}) and zero retakes.",
        "I promised myself one {scene} this week. Here's how it actually went.",
        "Funny how one {scene} can reset a whole week. My {trait} side needed this.",
        "The day I stopped overthinking {category} was the day this {scene} happened.",
    ),
    HookStyle.tip: (
        "{tip} plan your {scene} around the light. {Lighting} does half the work.",
        "{tip} make {interest} part of your morning and watch the rest of the day follow.",
        "{tip} the secret to a great {scene} is keeping it simple.",
        "{tip} prep everything the night before {a_scene}. Future you will thank you.",
        "{tip} give {interest} twenty focused minutes a day. Consistency beats intensity.",
    ),
    HookStyle.teaser: (
        "Something new is coming out of this {scene}. Stay close.",
        "Wait until you see what happened right after this shot.",
        "This {scene} is only the beginning. Part two drops soon.",
        "I've been keeping a {category} project quiet. Not for much longer.",
        "Guess where this {scene} was. The answer is in my next post.",
    ),
    HookStyle.relatable: (
        "Me pretending this {scene} was completely effortless.",
        "When your {trait} side and your lazy side both want {a_scene}.",
        "POV: you said 'just one more {category} shot' an hour ago.",
        "Nobody: ... Me: planning my entire day around {interest}.",
        "That feeling when the {scene} goes even better than planned.",
        "Telling everyone I'm a morning person after one {scene}.",
    ),
}
"""Several variants per style so captions vary; ``{Scene}``/``{Lighting}`` are capitalised fills."""

_VOICE_KEYWORDS: dict[str, frozenset[str]] = {
    "lively": frozenset(
        {"playful", "fun", "funny", "witty", "cheeky", "bubbly", "energetic", "upbeat", "bold", "hype"}
    ),
    "calm": frozenset({"calm", "gentle", "soft", "serene", "mindful", "soothing", "thoughtful", "relaxed"}),
    "professional": frozenset(
        {"professional", "expert", "authoritative", "formal", "informative", "analytical"}
    ),
}
"""Words in a persona's tone that pick the voice of tip and challenge openers (first match wins)."""
_OPENERS: dict[str, dict[str, tuple[str, ...]]] = {
    "lively": {
        "tip": ("Real talk:", "Hot tip:", "Okay, listen:"),
        "challenge": ("Challenge time:", "Let's go:"),
    },
    "calm": {
        "tip": ("Gentle reminder:", "A small note:", "Something I've learned:"),
        "challenge": ("An invitation:", "A small challenge:"),
    },
    "professional": {
        "tip": ("Key insight:", "One practical tip:", "Worth knowing:"),
        "challenge": ("A challenge for this week:", "Try this experiment:"),
    },
    "friendly": {
        "tip": ("Quick tip:", "Friendly tip:", "Tip:"),
        "challenge": ("Challenge:", "Try this:", "Your turn:"),
    },
}

_EMOJI: dict[str, tuple[str, ...]] = {
    "fitness": ("💪", "🔥", "🏃\u200d♀️", "⚡", "🙌", "🏋️"),
    "lifestyle": ("☕", "✨", "🌿", "📚", "🏡"),
    "fashion": ("✨", "👗", "🖤", "💫", "👠"),
    "beach": ("🌊", "☀️", "🏝️", "🐚", "🌴"),
    "urban": ("🌆", "🚶", "🏙️", "✨", "🚕"),
    "nature": ("🌲", "🌄", "🍃", "⛰️", "🌼"),
    "food": ("🍋", "🥗", "🍝", "☕", "🍓"),
    "tech": ("💻", "🚀", "⚡", "🎧", "📱"),
}
_DEFAULT_EMOJI = ("✨", "🙌", "💫", "🔥", "🌟")
_HOOK_EMOJI = 2
"""At most this many emoji sit at the end of the hook line; the rest go after the call to action."""
_MIN_HOOK_ROOM = 24
_MAX_HASHTAG_LEN = 30
_MAX_FILL_CHARS = 300
"""Longest persona or template text spliced into a hook: above every platform's hook line limit."""


@runtime_checkable
class HookWriter(Protocol):
    """Anything that writes caption hooks for a persona, template and platform."""

    name: str

    def write_hooks(
        self, persona: Persona, template: Template, platform: Platform, *, count: int = 5, seed: int
    ) -> list[Hook]: ...


def _clean(text: str, max_chars: int = _MAX_FILL_CHARS) -> str:
    """A persona or template field made safe to splice in: no emoji, no '#', one line, short.

    Cut to ``max_chars`` at a word boundary first: no hook line shows more, and trimming a fill is
    what keeps the writer linear in its input (``trim_text`` tries word after word).
    """
    cleaned = " ".join(strip_emoji(text[: max_chars * 4]).replace("#", "").split())
    if len(cleaned) > max_chars:
        cut = cleaned.rfind(" ", 0, max_chars + 1)
        cleaned = cleaned[: cut if cut > 0 else max_chars]
    return cleaned


def _with_article(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _voice(tone: str) -> str:
    words = set(re.findall(r"[a-z]+", tone.lower()))
    return next((voice for voice, keys in _VOICE_KEYWORDS.items() if words & keys), "friendly")


def _hashtag(text: str) -> str:
    """``"sunrise-run"`` -> ``"SunriseRun"``, ``"fitness"`` -> ``"fitness"``; '' if nothing usable."""
    words = [re.sub(r"[^\w]", "", w) for w in re.split(r"[\s\-/]+", _clean(text))]
    words = [w.replace("_", "") for w in words if w]
    tag = words[0].lower() if len(words) == 1 else "".join(w[:1].upper() + w[1:] for w in words)
    return tag[:_MAX_HASHTAG_LEN] if re.search(r"[^\W\d_]", tag) else ""


def niche_hashtag(persona: Persona) -> str:
    """The persona's niche as the hashtag every offline hook leads with ('' if nothing usable);
    hashtag ranking keeps it whatever a model-written hook set leads with."""
    return _hashtag(persona.niche)


def _hashtag_pool(persona: Persona, template: Template) -> list[str]:
    pool: list[str] = []
    seen: set[str] = set()
    for source in (persona.niche, template.category, *template.tags, *persona.interests):
        tag = _hashtag(source)
        if tag and tag.lower() not in seen:
            seen.add(tag.lower())
            pool.append(tag)
    return pool


def _fills(persona: Persona, template: Template, rng: random.Random) -> dict[str, str]:
    scene = _clean(template.tags[0].replace("-", " ")) if template.tags else _clean(template.category)
    scene = scene or "shoot"
    lighting = _clean(template.lighting)
    voice = _OPENERS[_voice(persona.tone)]
    return {
        "name": _clean(persona.name).split(" ")[0] or "Me",
        "trait": _clean(rng.choice(persona.personality_traits)).lower() or "curious",
        "interest": _clean(rng.choice(persona.interests)) or template.category,
        "category": _clean(template.category).lower(),
        "scene": scene,
        "Scene": scene[:1].upper() + scene[1:],
        "a_scene": _with_article(scene),
        "lighting": lighting,
        "Lighting": lighting[:1].upper() + lighting[1:],
        "pose": _clean(template.pose),
        "tip": rng.choice(voice["tip"]),
        "challenge": rng.choice(voice["challenge"]),
    }


class OfflineHookWriter:
    """Rule- and phrase-bank-based hook writer; deterministic, offline, always available."""

    name: str = "offline-templates"

    def write_hooks(
        self, persona: Persona, template: Template, platform: Platform, *, count: int = 5, seed: int
    ) -> list[Hook]:
        """``count`` hooks in distinct styles (repeating only past six), each within the platform rules."""
        if count < 1:
            raise InvalidInput(f"count must be >= 1, got {count}")
        rules = rules_for(platform)
        rng = random.Random(f"contentforge-hooks:{seed}:{persona.id}:{template.id}:{rules.platform.value}")
        styles = list(HookStyle)
        rng.shuffle(styles)
        pool = _hashtag_pool(persona, template)
        emoji_bank = _EMOJI.get(template.category.lower(), _DEFAULT_EMOJI)
        used: set[tuple[HookStyle, int]] = set()
        hooks: list[Hook] = []
        for index in range(count):
            style = styles[index % len(styles)]
            variants = [i for i in range(len(_PHRASES[style])) if (style, i) not in used]
            variant = rng.choice(variants or range(len(_PHRASES[style])))
            used.add((style, variant))
            body = _PHRASES[style][variant].format(**_fills(persona, template, rng))
            hashtags = self._hashtags(pool, rules, index, rng)
            emoji = self._emoji(emoji_bank, rules, rng)
            cta = self._call_to_action(persona, template, rules, rng, emoji[_HOOK_EMOJI:])
            text = self._fit_hook(body, emoji[:_HOOK_EMOJI], cta, hashtags, rules)
            hooks.append(
                Hook(style=style, text=text, call_to_action=cta, hashtags=hashtags, platform=rules.platform)
            )
        return hooks

    @staticmethod
    def _hashtags(pool: list[str], rules: PlatformRules, index: int, rng: random.Random) -> list[str]:
        """The niche tag first, then a rotation of the rest so hooks do not all share one set."""
        if not pool or rules.hashtag_count == 0:
            return []
        rest = pool[1:]
        rng.shuffle(rest)
        rotated = rest[index % len(rest) :] + rest[: index % len(rest)] if rest else []
        return [pool[0], *rotated][: rules.hashtag_count]

    @staticmethod
    def _emoji(bank: tuple[str, ...], rules: PlatformRules, rng: random.Random) -> list[str]:
        wanted = rng.randint(rules.emoji_min, rules.emoji_max)
        if wanted <= len(bank):
            return rng.sample(bank, wanted)
        start = rng.randrange(len(bank))
        return [bank[(start + i) % len(bank)] for i in range(wanted)]

    @staticmethod
    def _call_to_action(
        persona: Persona, template: Template, rules: PlatformRules, rng: random.Random, emoji: list[str]
    ) -> str:
        cta = rng.choice(rules.calls_to_action).format(
            category=_clean(template.category).lower(),
            interest=_clean(rng.choice(persona.interests)) or template.category,
            name=_clean(persona.name) or "me",
        )
        suffix = " " + "".join(emoji) if emoji else ""
        return trim_text(cta, rules.hook_max_chars - rules.measure(suffix), rules.measure) + suffix

    @staticmethod
    def _fit_hook(body: str, emoji: list[str], cta: str, hashtags: list[str], rules: PlatformRules) -> str:
        """Trim the body so hook line and whole caption fit; drops hashtags only if nothing else can."""
        suffix = " " + "".join(emoji) if emoji else ""
        while True:
            tail = "\n\n" + cta + ("\n\n" + " ".join(f"#{t}" for t in hashtags) if hashtags else "")
            room = min(rules.hook_max_chars, rules.max_chars - rules.measure(tail)) - rules.measure(suffix)
            if room >= _MIN_HOOK_ROOM or not hashtags:
                break
            hashtags.pop()
        return (trim_text(body, max(room, 0), rules.measure) + suffix).strip()
