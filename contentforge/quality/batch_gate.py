"""The quality gate on a batch's own texts: every piece's hooks and its image prompt.

Hooks (model-written or offline) are checked as the caption they would be published as
(``check_text(kind="hook")`` with the platform's rules and engagement-bait patterns):

1. a call to action that baits (react, comment, share, tag, vote) is rewritten first
   (``rewrite_cta``: its honest part, else the CTA is dropped), so a good hook is not thrown away
   for one sentence (status ``rewritten``);
2. a hook that still fails is regenerated once: for a model writer, ONE more model call for all of
   the piece's failing slots together (``LlmHookWriter.redraft``), whose answer the caller charges to
   the cost ledger under its own charge key; for the offline writer, the same style from another
   seed (status ``regenerated``). Any other ``HookWriter`` is not asked again (a second call may
   cost or change what a resumed batch expects): its failing hook goes straight to step 4;
3. then a model hook falls back to the offline writer's hook of the same style (``fallback``);
4. else the better attempt is kept and marked ``needs_review``: it is stored and shown, but
   ``Hook.held_by_quality_gate`` keeps it from ever being chosen for publishing, and it is moved
   behind the hooks that passed.

Image prompts are checked for slots left unfilled, stuttered or repeated text and the persona's
LoRA trigger word (when it has one). A failing model prompt falls back to the rule-based prompt
(no second paid call: the rules prompt is the regeneration that costs nothing); a failing rule
prompt is deterministic, so it is marked ``needs_review`` for the reviewer to see. Each verdict is
stored with its text (``hooks.quality_gate``, ``pieces.prompt_quality_gate``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contentforge.domain.models import Hook, HookStyle, Persona, Platform, Template
from contentforge.quality.gate import GateResult, check_text, engagement_bait, gate_text, rewrite_cta
from contentforge.text.hooks import HookWriter, OfflineHookWriter
from contentforge.text.llm_hooks import LlmHookWriter
from contentforge.text.llm_prompts import ImagePromptOutcome
from contentforge.text.prompts import ImagePrompt, build_image_prompt
from contentforge.text.providers.protocol import StructuredResult
from contentforge.text.providers.schemas import HookDrafts

REGENERATION_SEED_OFFSET = 7919
"""The offline writer's second try uses ``seed + this`` so it picks other phrases."""


def check_hook(hook: Hook) -> GateResult:
    """The gate's rules against the hook's caption exactly as it would be published."""
    return check_text(hook.caption, "hook", platform=hook.platform, hashtags=hook.hashtags)


def _without_bait(hook: Hook) -> Hook:
    """The hook with a baiting call to action rewritten to its honest part, or dropped when nothing
    honest is left (a hook needs no call to action; an invented one could not be traced)."""
    if not engagement_bait(hook.call_to_action):
        return hook
    return hook.model_copy(update={"call_to_action": rewrite_cta(hook.call_to_action, "")})


@dataclass
class GatedHooks:
    """The piece's hooks with their verdicts, and the regeneration's model answer to charge."""

    hooks: list[Hook]
    regeneration: StructuredResult[HookDrafts] | None = None


def gate_hooks(
    hooks: list[Hook],
    persona: Persona,
    template: Template,
    platform: Platform,
    writer: HookWriter,
    *,
    seed: int,
    offline_styles: frozenset[HookStyle] = frozenset(),
) -> GatedHooks:
    """Each hook gated as the module docstring says; ``offline_styles``: slots the offline writer
    already filled (a model writer's fallback), regenerated offline rather than by the model."""
    offline = writer if isinstance(writer, OfflineHookWriter) else OfflineHookWriter()
    model = writer if isinstance(writer, LlmHookWriter) else None
    candidates = [_without_bait(hook) for hook in hooks]
    verdicts = [check_hook(hook) for hook in candidates]
    failing = [i for i, verdict in enumerate(verdicts) if not verdict.passed]
    by_caption: dict[str, Hook] = {}

    def offer(hook: Hook) -> str:
        by_caption[hook.caption] = hook
        return hook.caption

    redrafted: dict[HookStyle, list[Hook]] | None = None
    regeneration: StructuredResult[HookDrafts] | None = None

    def regenerate_with_model(style: HookStyle, failed: Hook) -> str:
        nonlocal redrafted, regeneration
        if redrafted is None:  # one call for every failing model slot of the piece
            assert model is not None
            styles = [candidates[i].style for i in failing if candidates[i].style not in offline_styles]
            redrafted, regeneration = model.redraft(persona, template, platform, styles)
        fresh = redrafted.get(style) or []
        return offer(_without_bait(fresh.pop(0))) if fresh else offer(failed)

    def offline_hook(style: HookStyle, seed_: int, other_than: str) -> Callable[[], str]:
        def write() -> str:
            pool = offline.write_hooks(persona, template, platform, count=2 * len(HookStyle), seed=seed_)
            same = [h for h in pool if h.style == style and h.caption != other_than]
            return offer(same[0]) if same else other_than

        return write

    def model_hook(failed: Hook) -> Callable[[], str]:
        return lambda: regenerate_with_model(failed.style, failed)

    def check(caption: str) -> GateResult:
        return check_hook(by_caption[caption])

    gated_hooks: list[Hook] = []
    for i, hook in enumerate(candidates):
        if i not in failing:
            gated_hooks.append(_with_verdict(hook, verdicts[i], hooks[i]))
            continue
        from_model = model is not None and hook.style not in offline_styles
        regenerate: Callable[[], str] | None = None
        if from_model:
            regenerate = model_hook(hook)
        elif model is not None or isinstance(writer, OfflineHookWriter):
            regenerate = offline_hook(hook.style, seed + REGENERATION_SEED_OFFSET, hook.caption)
        fallback = offline_hook(hook.style, seed, hook.caption) if from_model else None
        gated = gate_text(offer(hook), check, regenerate=regenerate, fallback=fallback)
        gated_hooks.append(by_caption[gated.text].model_copy(update={"quality_gate": gated.result.as_dict()}))
    # Hooks that passed go first: the first hook is the one published by default.
    ordered = sorted(gated_hooks, key=lambda h: h.held_by_quality_gate)
    return GatedHooks(ordered, regeneration)


def _with_verdict(hook: Hook, result: GateResult, original: Hook) -> Hook:
    """``hook`` (which passed) with its verdict; ``rewritten`` when its baiting CTA was replaced."""
    verdict = result.as_dict()
    if hook.call_to_action != original.call_to_action:
        verdict["status"] = "rewritten"
        verdict["rewritten_from"] = original.call_to_action
    return hook.model_copy(update={"quality_gate": verdict})


def check_image_prompt(prompt: str, persona: Persona) -> GateResult:
    """Slots, stutters, repeated sentences and the persona's trigger word in an image prompt."""
    return check_text(
        prompt, "image_prompt", must_name=[persona.trigger_word] if persona.trigger_word else []
    )


@dataclass(frozen=True)
class GatedPrompt:
    """The prompt to generate with, the gate's verdict on it, and the outcome to record."""

    prompt: ImagePrompt
    verdict: dict[str, Any]
    outcome: ImagePromptOutcome | None


def gate_image_prompt(
    persona: Persona, template: Template, outcome: ImagePromptOutcome | None
) -> GatedPrompt:
    """The model's prompt if it passes, else the rule-based prompt (``fallback``); a rule-based prompt
    that fails is kept and marked ``needs_review`` (it is deterministic: a second try is the same)."""
    rules_prompt = (
        build_image_prompt(persona, template) if outcome is None or outcome.source == "llm" else None
    )
    prompt = outcome.prompt if outcome is not None else rules_prompt
    assert prompt is not None
    from_model = outcome is not None and outcome.source == "llm"
    gated = gate_text(
        prompt.prompt,
        lambda text: check_image_prompt(text, persona),
        fallback=(lambda: rules_prompt.prompt) if from_model and rules_prompt is not None else None,
    )
    verdict = gated.result.as_dict()
    if not from_model or gated.text == prompt.prompt:
        return GatedPrompt(prompt, verdict, outcome)
    assert outcome is not None and rules_prompt is not None
    issues = "; ".join(f"{i.rule}: {i.detail}" for i in check_image_prompt(prompt.prompt, persona).issues)
    replaced = ImagePromptOutcome(
        prompt=rules_prompt,
        source="rules",
        prompt_version=outcome.prompt_version,
        result=outcome.result,
        fallback_reason=f"quality gate: {issues}"[:300],
    )
    return GatedPrompt(rules_prompt, verdict, replaced)


def gate_summary(hooks: Sequence[Hook], prompt_gate: Mapping[str, Any] | None = None) -> str:
    """One line for a reviewer: how many hooks passed the gate, which are held and why, the prompt's."""
    counts: dict[str, int] = {}
    held_rules: set[str] = set()
    for hook in hooks:
        status = (hook.quality_gate or {}).get("status", "not gated")
        counts[status] = counts.get(status, 0) + 1
        if hook.held_by_quality_gate:
            held_rules |= {issue["rule"] for issue in (hook.quality_gate or {}).get("issues", [])}
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    line = "hooks: " + (", ".join(parts) if parts else "none")
    if held_rules:
        line += f" (held: {', '.join(sorted(held_rules))})"
    if prompt_gate is not None:
        line += f"; image prompt: {prompt_gate.get('status', '?')}"
    return line
