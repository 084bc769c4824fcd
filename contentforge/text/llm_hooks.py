"""Caption hooks from a language model, held to the same platform rules as the offline writer.

``LlmHookWriter`` has the ``HookWriter`` interface. It asks the provider chain for hooks in
distinct styles as structured output (prompt ``hooks.v<N>``), then enforces the platform rules
itself, because a model's promise to count characters is not a check: hashtags are cleaned,
de-duplicated and capped, surplus emoji removed, the hook line and call to action trimmed at a
word boundary and the whole caption fitted; a hook that still breaks a rule (too few emoji, empty
text) is replaced by the offline writer's hook of the same style. When no model is reachable
the whole set comes from the offline writer. ``build_hook_writer(settings)`` picks the writer.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import regex

from contentforge.config import Settings
from contentforge.domain.models import Hook, HookStyle, Persona, Platform, Template
from contentforge.errors import ContentForgeError, InvalidInput
from contentforge.text.hooks import HookWriter, OfflineHookWriter
from contentforge.text.platform_rules import (
    EMOJI_RE,
    PlatformRules,
    check_caption,
    rules_for,
    strip_emoji,
    trim_text,
)
from contentforge.text.prompt_library import PromptTemplate, load_prompt
from contentforge.text.providers.factory import build_text_provider
from contentforge.text.providers.offline import OfflineEngine
from contentforge.text.providers.protocol import StructuredResult, TextProvider
from contentforge.text.providers.schemas import HookDraft, HookDrafts

log = logging.getLogger(__name__)

_INLINE_TAG_RE = re.compile(r"(?<![\w&#])#(\w*[^\W\d_]\w*)")
_VALID_TAG_RE = re.compile(r"^\w*[^\W\d_]\w*$")
_MAX_TAG_LEN = 30


@dataclass
class HookOutcome:
    """The hooks plus how they were made: the model answer (if any) and which styles fell back."""

    hooks: list[Hook]
    result: StructuredResult[HookDrafts] | None = None
    prompt_version: str | None = None
    offline_styles: list[HookStyle] = field(default_factory=list)
    """Styles whose hook came from the offline writer (missing from the answer or unfixable)."""
    fallback_reason: str | None = None
    """Set when no model answered and every hook is the offline writer's."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _keep_emoji(text: str, allowed: int) -> tuple[str, int]:
    """``text`` with emoji beyond the first ``allowed`` removed; returns it and how many stayed."""
    kept = 0

    def keep(match: regex.Match[str]) -> str:
        nonlocal kept
        if kept < allowed:
            kept += 1
            return match.group(0)
        return " "

    return " ".join(EMOJI_RE.sub(keep, text).split()), kept


def _fit(text: str, limit: int, rules: PlatformRules) -> str:
    """Trim ``text`` to ``limit`` keeping its emoji: they move to the end so a cut never drops them."""
    if rules.measure(text) <= limit:
        return text
    emoji = "".join(EMOJI_RE.findall(text))
    suffix = " " + emoji if emoji else ""
    return (
        trim_text(strip_emoji(text), max(limit - rules.measure(suffix), 0), rules.measure) + suffix
    ).strip()


def _clean_tags(tags: list[str], limit: int) -> list[str]:
    cleaned: list[str] = []
    for raw in tags:
        tag = re.sub(r"[^\w]", "", raw.strip().lstrip("#"))[:_MAX_TAG_LEN]
        if _VALID_TAG_RE.match(tag) and tag.lower() not in {t.lower() for t in cleaned}:
            cleaned.append(tag)
    return cleaned[:limit]


def enforce_platform_rules(draft: HookDraft, rules: PlatformRules) -> Hook | None:
    """The draft made to fit ``rules`` (trimmed, tags capped, surplus emoji removed), or ``None``
    when it cannot be fixed without inventing content (too few emoji, no text left)."""
    text, cta = _one_line(draft.text), _one_line(draft.call_to_action)
    inline = _INLINE_TAG_RE.findall(text) + _INLINE_TAG_RE.findall(cta)
    text, cta = (_one_line(_INLINE_TAG_RE.sub(" ", s)) for s in (text, cta))
    hashtags = _clean_tags([*draft.hashtags, *inline], rules.max_hashtags)
    text, in_text = _keep_emoji(text, rules.emoji_max)
    cta, _ = _keep_emoji(cta, rules.emoji_max - in_text)
    text = _fit(text, rules.hook_max_chars, rules)
    cta = _fit(cta, rules.hook_max_chars, rules)
    if not strip_emoji(text).strip(" .…"):
        return None

    def caption() -> str:
        return Hook(
            style=draft.style, text=text, call_to_action=cta, hashtags=hashtags, platform=rules.platform
        ).caption

    while rules.measure(caption()) > rules.max_chars and hashtags:
        hashtags.pop()
    if rules.measure(caption()) > rules.max_chars:
        room = rules.max_chars - rules.measure(caption()) + rules.measure(cta)
        cta = _fit(cta, max(room, 0), rules)
    hook = Hook(style=draft.style, text=text, call_to_action=cta, hashtags=hashtags, platform=rules.platform)
    violations = check_caption(hook.caption, hook.hashtags, rules.platform)
    if violations:
        log.info(
            "model hook (%s) still breaks %s rules after fitting: %s",
            draft.style.value,
            rules.platform.value,
            "; ".join(violations),
        )
        return None
    return hook


def _styles(count: int, seed: int, persona: Persona, template: Template) -> list[HookStyle]:
    order = list(HookStyle)
    random.Random(f"contentforge-llm-hooks:{seed}:{persona.id}:{template.id}").shuffle(order)
    return [order[i % len(order)] for i in range(count)]


class LlmHookWriter:
    """``HookWriter`` backed by a ``TextProvider`` (usually a chain), with the offline writer as backstop."""

    name: str = "llm"

    def __init__(
        self,
        provider: TextProvider,
        *,
        fallback: OfflineHookWriter | None = None,
        prompt: PromptTemplate | None = None,
        temperature: float = 0.8,
        max_tokens: int = 1500,
        on_result: Callable[[StructuredResult[HookDrafts]], None] | None = None,
    ) -> None:
        self.provider = provider
        self.fallback = fallback or OfflineHookWriter()
        self.prompt = prompt or load_prompt("hooks")
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.on_result = on_result
        """Called with each model answer, e.g. to write its cost with ``record_text_cost``."""

    def __repr__(self) -> str:
        return f"LlmHookWriter(provider={self.provider!r}, prompt={self.prompt.id})"

    def write_hooks(
        self, persona: Persona, template: Template, platform: Platform, *, count: int = 5, seed: int
    ) -> list[Hook]:
        return self.write_hooks_detailed(persona, template, platform, count=count, seed=seed).hooks

    def render_prompt(
        self, persona: Persona, template: Template, rules: PlatformRules, styles: list[HookStyle]
    ) -> tuple[str, str]:
        scene = template.tags[0].replace("-", " ") if template.tags else template.category
        return self.prompt.render(
            count=len(styles),
            name=persona.name,
            niche=persona.niche,
            traits=", ".join(persona.personality_traits),
            interests=", ".join(persona.interests),
            tone=persona.tone,
            category=template.category,
            scene=scene,
            pose=template.pose,
            lighting=template.lighting,
            tags=", ".join(template.tags) or "none",
            **rules.prompt_fields(),
            styles=", ".join(s.value for s in styles),
        )

    def write_hooks_detailed(
        self, persona: Persona, template: Template, platform: Platform, *, count: int = 5, seed: int
    ) -> HookOutcome:
        if count < 1:
            raise InvalidInput(f"count must be >= 1, got {count}")
        rules = rules_for(platform)
        styles = _styles(count, seed, persona, template)
        system, user = self.render_prompt(persona, template, rules, styles)
        try:
            answer = self.provider.generate_structured(
                user,
                HookDrafts,
                system=system,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                prompt_version=self.prompt.id,
                context={
                    "persona": persona,
                    "template": template,
                    "platform": rules.platform,
                    "count": count,
                    "seed": seed,
                },
            )
        except ContentForgeError as exc:
            if isinstance(exc, InvalidInput):
                raise
            log.warning(
                "no model wrote hooks for template %s (%s); using the offline writer", template.id, exc
            )
            hooks = self.fallback.write_hooks(persona, template, rules.platform, count=count, seed=seed)
            return HookOutcome(
                hooks=hooks,
                prompt_version=None,
                offline_styles=[h.style for h in hooks],
                fallback_reason=str(exc),
            )
        if self.on_result is not None:
            self.on_result(answer)
        if answer.provider == OfflineEngine.name:  # the chain's rule engine answered: its hooks, its order
            hooks = self.fallback.write_hooks(persona, template, rules.platform, count=count, seed=seed)
            return HookOutcome(
                hooks=hooks,
                result=answer,
                prompt_version=answer.prompt_version,
                offline_styles=[h.style for h in hooks],
            )
        hooks, offline_styles = self._assemble(answer.value, styles, persona, template, rules, seed)
        return HookOutcome(
            hooks=hooks, result=answer, prompt_version=answer.prompt_version, offline_styles=offline_styles
        )

    def redraft(
        self, persona: Persona, template: Template, platform: Platform, styles: list[HookStyle]
    ) -> tuple[dict[HookStyle, list[Hook]], StructuredResult[HookDrafts] | None]:
        """One more model call for just ``styles`` (hooks the quality gate sent back): the new hooks
        that fit the platform rules, by style, and the answer to charge (``None`` when no model
        answered or only the chain's offline engine did, so nothing new was written)."""
        rules = rules_for(platform)
        system, user = self.render_prompt(persona, template, rules, styles)
        try:
            answer = self.provider.generate_structured(
                user,
                HookDrafts,
                system=system,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                prompt_version=self.prompt.id,
                context={"persona": persona, "template": template, "platform": rules.platform},
            )
        except ContentForgeError as exc:
            if isinstance(exc, InvalidInput):
                raise
            log.warning("no model rewrote hooks for template %s (%s)", template.id, exc)
            return {}, None
        if self.on_result is not None:
            self.on_result(answer)
        if answer.provider == OfflineEngine.name:
            return {}, None
        redrafted: dict[HookStyle, list[Hook]] = {}
        for draft in answer.value.hooks:
            if draft.style in styles and (hook := enforce_platform_rules(draft, rules)) is not None:
                redrafted.setdefault(draft.style, []).append(hook)
        return redrafted, answer

    def _assemble(
        self,
        drafts: HookDrafts,
        styles: list[HookStyle],
        persona: Persona,
        template: Template,
        rules: PlatformRules,
        seed: int,
    ) -> tuple[list[Hook], list[HookStyle]]:
        by_style: dict[HookStyle, list[HookDraft]] = {}
        for draft in drafts.hooks:
            by_style.setdefault(draft.style, []).append(draft)
        backup: dict[HookStyle, list[Hook]] | None = None
        hooks: list[Hook] = []
        offline_styles: list[HookStyle] = []
        for style in styles:
            hook = None
            while hook is None and by_style.get(style):
                hook = enforce_platform_rules(by_style[style].pop(0), rules)
            if hook is None:
                if backup is None:
                    backup = {}
                    rounds = -(-len(styles) // len(HookStyle))  # every style at least as often as wanted
                    extra = self.fallback.write_hooks(
                        persona, template, rules.platform, count=rounds * len(HookStyle), seed=seed
                    )
                    for offline_hook in extra:
                        backup.setdefault(offline_hook.style, []).append(offline_hook)
                hook = backup[style].pop(0)
                offline_styles.append(style)
            hooks.append(hook)
        if offline_styles:
            log.info(
                "hooks for template %s: %d of %d from the offline writer (%s)",
                template.id,
                len(offline_styles),
                len(styles),
                ", ".join(s.value for s in offline_styles),
            )
        return hooks, offline_styles


def build_hook_writer(
    settings: Settings,
    *,
    on_result: Callable[[StructuredResult[HookDrafts]], None] | None = None,
) -> HookWriter:
    """The offline writer if the chain is only ``offline`` (or nothing else can run), else ``LlmHookWriter``.

    Raises ``NoProviderAvailable`` when no configured provider can run at all.
    """
    if settings.text_provider_names == ["offline"]:
        return OfflineHookWriter()
    chain = build_text_provider(settings)
    if all(isinstance(p, OfflineEngine) for p in chain.providers):
        log.warning(
            "hooks: only the offline writer can run (%s)",
            "; ".join(f"{name} skipped: {why}" for name, why in chain.skipped),
        )
        return OfflineHookWriter()
    log.info("hooks: model-backed writer over %s", ", ".join(chain.names))
    return LlmHookWriter(chain, on_result=on_result)
