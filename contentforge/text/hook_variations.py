"""Variations of an existing hook, and calls to action alone, held to the platform rules.

``HookVariator.variations`` rewrites one hook a user already has (its line, call to action and
hashtags) in distinct styles. With a model provider it asks for rewrites as structured output
(prompt ``hook_variations.v<N>``); offline, and for any rewrite a model got wrong, it frames the
hook's own line in each style ("POV: ...", "Tip: ...") with the offline writer's emoji, call to
action and hashtags where the hook has none. Every variation goes through the same
``enforce_platform_rules`` as model-written hooks, so none breaks a limit.

``calls_to_action`` takes the calls to action of hooks from the configured ``HookWriter``: the
platform's bank offline (after whatever quality gate the writer applies), the model's otherwise.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from contentforge.domain.models import Hook, HookStyle, Persona, Platform, Template
from contentforge.errors import ContentForgeError, InvalidInput
from contentforge.text.hooks import HookWriter, OfflineHookWriter
from contentforge.text.llm_hooks import enforce_platform_rules
from contentforge.text.platform_rules import EMOJI_RE, PlatformRules, count_emoji, rules_for, strip_emoji
from contentforge.text.prompt_library import PromptTemplate, load_prompt
from contentforge.text.providers.offline import OfflineEngine
from contentforge.text.providers.protocol import TextProvider
from contentforge.text.providers.schemas import HookDraft, HookDrafts

log = logging.getLogger(__name__)

FRAMES: dict[HookStyle, tuple[str, ...]] = {
    HookStyle.question: ("{line}. Would you try it?", "{line}. Who else?"),
    HookStyle.challenge: ("Try this week: {line}", "{line}. Your turn."),
    HookStyle.story: ("Quick story: {line}", "Today I learned: {line}"),
    HookStyle.tip: ("Tip: {line}", "Here is the thing: {line}"),
    HookStyle.teaser: ("{line}. More on this soon.", "Wait for it: {line}"),
    HookStyle.relatable: ("POV: {line}", "Me, every time: {line}"),
}
"""How the offline variator frames a hook's line in each style (the line keeps its own words)."""


@dataclass(frozen=True)
class BaseHook:
    """The hook to vary, as the user has it."""

    text: str
    call_to_action: str = ""
    hashtags: tuple[str, ...] = ()


@dataclass
class VariationOutcome:
    hooks: list[Hook]
    source: str
    """``model`` when a model wrote at least one variation, else ``rules``."""
    prompt_version: str | None = None
    fallback_reason: str | None = None
    offline_styles: list[HookStyle] = field(default_factory=list)


def _styles(count: int, seed: int, persona: Persona, base: BaseHook) -> list[HookStyle]:
    order = list(HookStyle)
    random.Random(f"contentforge-variations:{seed}:{persona.id}:{base.text}").shuffle(order)
    return [order[i % len(order)] for i in range(count)]


def _line(text: str) -> str:
    """The hook's line without its emoji and closing punctuation, so a frame can wrap it."""
    return " ".join(strip_emoji(text).split()).rstrip(" .!?…")


def offline_variation(
    base: BaseHook, style: HookStyle, variant: int, filler: Hook, rules: PlatformRules
) -> Hook | None:
    """``base`` framed in ``style``; ``filler`` (an offline hook) lends emoji, CTA and hashtags it lacks."""
    frames = FRAMES[style]
    text = frames[variant % len(frames)].format(line=_line(base.text) or base.text.strip())
    cta = base.call_to_action.strip() or filler.call_to_action
    hashtags = list(base.hashtags) or list(filler.hashtags)
    emoji = EMOJI_RE.findall(base.text) or EMOJI_RE.findall(filler.text)
    missing = rules.emoji_min - count_emoji(cta)
    if emoji and missing > 0:
        text = f"{text} {''.join(emoji[:missing])}"
    return enforce_platform_rules(
        HookDraft(style=style, text=text, call_to_action=cta, hashtags=hashtags), rules
    )


class HookVariator:
    """Writes variations of a hook with ``provider`` (a model chain) or, without one, by rules."""

    def __init__(self, provider: TextProvider | None = None, *, prompt: PromptTemplate | None = None) -> None:
        self.provider = provider
        self.prompt = prompt or load_prompt("hook_variations")
        self.offline = OfflineHookWriter()

    def variations(
        self,
        persona: Persona,
        template: Template,
        platform: Platform,
        base: BaseHook,
        *,
        count: int = 5,
        seed: int = 0,
    ) -> VariationOutcome:
        if count < 1:
            raise InvalidInput(f"count must be >= 1, got {count}")
        if not base.text.strip():
            raise InvalidInput("the hook to vary has no text")
        rules = rules_for(platform)
        styles = _styles(count, seed, persona, base)
        fillers = self.offline.write_hooks(persona, template, rules.platform, count=count, seed=seed)
        drafts: dict[HookStyle, list[HookDraft]] = {}
        outcome = VariationOutcome(hooks=[], source="rules")
        if self.provider is not None:
            drafts, outcome = self._ask(persona, template, rules, base, styles, seed)
        seen = {_line(base.text).lower()}
        for index, style in enumerate(styles):
            hook = None
            while hook is None and drafts.get(style):
                hook = enforce_platform_rules(drafts[style].pop(0), rules)
            if hook is None:
                outcome.offline_styles.append(style)
                for variant in range(len(FRAMES[style])):
                    hook = offline_variation(
                        base, style, index // len(HookStyle) + variant, fillers[index], rules
                    )
                    if hook is not None and _line(hook.text).lower() not in seen:
                        break
            if hook is not None and _line(hook.text).lower() not in seen:
                seen.add(_line(hook.text).lower())
                outcome.hooks.append(hook)
        if len(outcome.offline_styles) < len(styles) and outcome.hooks:
            outcome.source = "model"
        return outcome

    def _ask(
        self,
        persona: Persona,
        template: Template,
        rules: PlatformRules,
        base: BaseHook,
        styles: list[HookStyle],
        seed: int,
    ) -> tuple[dict[HookStyle, list[HookDraft]], VariationOutcome]:
        assert self.provider is not None
        system, user = self.prompt.render(
            count=len(styles),
            name=persona.name,
            niche=persona.niche,
            tone=persona.tone,
            text=base.text,
            call_to_action=base.call_to_action or "(none)",
            hashtags=", ".join(base.hashtags) or "(none)",
            **rules.prompt_fields(),
            styles=", ".join(s.value for s in styles),
        )
        try:
            answer = self.provider.generate_structured(
                user,
                HookDrafts,
                system=system,
                prompt_version=self.prompt.id,
                context={"persona": persona, "template": template, "platform": rules.platform,
                         "count": len(styles), "seed": seed},
            )  # fmt: skip
        except ContentForgeError as exc:
            if isinstance(exc, InvalidInput):
                raise
            log.warning("no model wrote hook variations (%s); framing the hook by rules", exc)
            return {}, VariationOutcome(hooks=[], source="rules", fallback_reason=str(exc))
        if answer.provider == OfflineEngine.name:  # the chain's rule engine wrote new hooks, not rewrites
            return {}, VariationOutcome(hooks=[], source="rules", prompt_version=answer.prompt_version)
        drafts: dict[HookStyle, list[HookDraft]] = {}
        for draft in answer.value.hooks:
            drafts.setdefault(draft.style, []).append(draft)
        return drafts, VariationOutcome(hooks=[], source="model", prompt_version=answer.prompt_version)


def calls_to_action(
    writer: HookWriter, persona: Persona, template: Template, platform: Platform, *, count: int, seed: int
) -> list[str]:
    """Up to ``count`` distinct calls to action for the platform, from hooks ``writer`` writes.

    Fewer come back when the writer's bank has fewer distinct ones for this persona and template.
    """
    if count < 1:
        raise InvalidInput(f"count must be >= 1, got {count}")
    hooks = writer.write_hooks(persona, template, platform, count=min(count * 2, 12), seed=seed)
    found: list[str] = []
    for hook in hooks:
        cta = hook.call_to_action.strip()
        if cta and cta not in found:
            found.append(cta)
    return found[:count]
