"""Model-written hooks and image prompts: platform rules enforced on whatever the model returns,
offline fallbacks, the writer factory, prompt versions and cost hooks."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import SecretStr
from support.llm_fakes import FakeAnthropic, FakeOpenAI

from contentforge.catalog import load_templates
from contentforge.config import Settings
from contentforge.domain.models import HookStyle, LoraSpec, Persona, Platform
from contentforge.text.hooks import HookWriter, OfflineHookWriter
from contentforge.text.llm_hooks import LlmHookWriter, build_hook_writer, enforce_platform_rules
from contentforge.text.llm_prompts import LlmImagePromptWriter, build_image_prompt_writer
from contentforge.text.platform_rules import check_caption, count_emoji, rules_for
from contentforge.text.prompts import SAFETY_NEGATIVES, build_image_prompt
from contentforge.text.providers import NoProviderAvailable, OfflineEngine, ProviderChain
from contentforge.text.providers.openai_provider import OpenAIProvider
from contentforge.text.providers.schemas import HookDraft

KEY = "sk-hooks-test-key-123"
FAST = {"retry_base_s": 0.01, "max_attempts": 2, "timeout_s": 5.0, "prices": {"gpt-test": (0.5, 2.0)}}
TEMPLATE = load_templates()[0]
LONG = (
    "This is an extremely long hook line that keeps going well past what any platform shows before the "
    "fold, because the model did not count characters at all and just kept writing about the sunrise run "
    "and the meal prep and everything else it could think of"
)


def persona(**kw: object) -> Persona:
    fields = {
        "id": "maya-lin-01",
        "name": "Maya Lin",
        "niche": "fitness",
        "appearance": "athletic woman in her late twenties with shoulder-length dark hair",
        "personality_traits": ["disciplined", "playful"],
        "interests": ["trail running", "meal prep"],
        "tone": "warm, upbeat and encouraging",
        "platforms": ["instagram"],
    }
    return Persona(**(fields | kw))


def unruly_answer(styles: list[HookStyle] | None = None) -> str:
    """What a careless model returns: over-long lines, 9 hashtags, 6 emoji, inline tags, newlines."""
    hooks = [
        {
            "style": style.value,
            "text": f"{style.value.title()}! {LONG} 🔥🔥🔥 #extra{i}\nsecond line",
            "call_to_action": "Comment below and tell me everything 💪💪💪",
            "hashtags": [
                "#fitness",
                "fitness",
                "Run Club",
                "morning",
                "meal-prep",
                "sunrise",
                "tag6",
                "tag7",
                "8",
                "tag9",
            ],
        }
        for i, style in enumerate(styles or list(HookStyle))
    ]
    return "Here are your hooks:\n```json\n" + json.dumps({"hooks": hooks}) + "\n```"


def writer(server: FakeOpenAI, **kw: object) -> LlmHookWriter:
    provider = OpenAIProvider(api_key=SecretStr(KEY), model="gpt-test", base_url=server.url, **FAST)
    return LlmHookWriter(ProviderChain([provider, OfflineEngine()]), **kw)


@pytest.mark.parametrize("platform", list(Platform))
def test_model_hooks_obey_platform_limits_even_when_the_model_ignores_them(platform: Platform) -> None:
    rules = rules_for(platform)
    with FakeOpenAI(KEY) as server:
        server.text(unruly_answer(), input_tokens=900, output_tokens=600)
        outcome = writer(server).write_hooks_detailed(persona(), TEMPLATE, platform, count=5, seed=3)
    hooks = outcome.hooks
    assert len(hooks) == 5 and len({h.style for h in hooks}) == 5
    for hook in hooks:
        assert check_caption(hook.caption, hook.hashtags, platform) == [], hook
        assert rules.measure(hook.text) <= rules.hook_max_chars
        assert len(hook.hashtags) <= rules.max_hashtags
        assert rules.emoji_min <= count_emoji(hook.caption) <= rules.emoji_max
        assert "\n" not in hook.text and "#" not in hook.text
    model_hooks = [h for h in hooks if h.style not in outcome.offline_styles]
    if rules.emoji_min <= 6:  # the model gave 6 emoji per hook, so surplus can be trimmed everywhere
        assert model_hooks == hooks, "fixable model hooks were replaced"
    for hook in model_hooks:
        assert hook.text.startswith(hook.style.value.title()) and hook.text.count("…") == 1
        assert hook.hashtags[0] == "fitness" and hook.hashtags.count("fitness") == 1
    assert outcome.result is not None and outcome.result.provider == "openai"
    assert outcome.prompt_version == "hooks.v1"


def test_prompt_states_persona_template_and_platform_limits() -> None:
    with FakeOpenAI(KEY) as server:
        server.text(unruly_answer())
        writer(server).write_hooks(persona(), TEMPLATE, Platform.x, seed=1)
    request = server.requests[0].body
    system, user = request["messages"][0]["content"], request["messages"][1]["content"]
    assert "Maya Lin" in system and "Maya Lin" in user
    assert "trail running" in user and TEMPLATE.pose in user
    assert "at most 280 characters" in user and "X counts emoji" in user and "between 0 and 1" in user


def test_missing_and_duplicate_styles_are_filled_from_the_offline_writer() -> None:
    with FakeOpenAI(KEY) as server:
        server.text(unruly_answer([HookStyle.question, HookStyle.question, HookStyle.tip]))
        outcome = writer(server).write_hooks_detailed(
            persona(), TEMPLATE, Platform.instagram, count=5, seed=9
        )
    styles = [h.style for h in outcome.hooks]
    assert len(set(styles)) == 5
    from_model = {HookStyle.question, HookStyle.tip} & set(styles)
    assert set(outcome.offline_styles) == set(styles) - from_model
    offline = {
        h.style: h
        for h in OfflineHookWriter().write_hooks(persona(), TEMPLATE, Platform.instagram, count=6, seed=9)
    }
    for hook in outcome.hooks:
        if hook.style in outcome.offline_styles:
            assert hook == offline[hook.style]
        assert check_caption(hook.caption, hook.hashtags, Platform.instagram) == []


def test_a_hook_that_cannot_be_fixed_is_replaced_by_the_offline_one() -> None:
    rules = rules_for(Platform.instagram)  # wants at least one emoji
    draft = HookDraft(style=HookStyle.tip, text="No emoji here at all", call_to_action="Save this")
    assert enforce_platform_rules(draft, rules) is None
    fixed = enforce_platform_rules(
        HookDraft(style=HookStyle.tip, text="Short and sweet ✨✨✨✨", hashtags=["a1", "a1", "#b"]), rules
    )
    assert fixed is not None and count_emoji(fixed.caption) == 2 and fixed.hashtags == ["a1", "b"]


def test_unreachable_model_falls_back_to_the_offline_writer() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    provider = OpenAIProvider(api_key=SecretStr(KEY), model="gpt-test", base_url=url, **FAST)
    outcome = LlmHookWriter(ProviderChain([provider])).write_hooks_detailed(
        persona(), TEMPLATE, Platform.tiktok, count=5, seed=4
    )
    assert outcome.hooks == OfflineHookWriter().write_hooks(
        persona(), TEMPLATE, Platform.tiktok, count=5, seed=4
    )
    assert outcome.result is None and "cannot connect" in (outcome.fallback_reason or "")


def test_auth_failure_falls_through_the_chain_to_the_offline_engine() -> None:
    with FakeOpenAI("another-key") as server:
        outcome = writer(server).write_hooks_detailed(
            persona(), TEMPLATE, Platform.instagram, count=5, seed=2
        )
    assert outcome.result is not None and outcome.result.provider == "offline"
    assert "authentication failed" in outcome.result.result.fallbacks[0]
    assert outcome.hooks == OfflineHookWriter().write_hooks(
        persona(), TEMPLATE, Platform.instagram, count=5, seed=2
    )


def test_on_result_receives_the_answer_for_the_cost_ledger() -> None:
    seen = []
    with FakeOpenAI(KEY) as server:
        server.text(unruly_answer(), input_tokens=1000, output_tokens=1000)
        writer(server, on_result=seen.append).write_hooks(persona(), TEMPLATE, Platform.threads, seed=5)
    assert len(seen) == 1 and seen[0].prompt_version == "hooks.v1"
    assert seen[0].result.cost_usd == pytest.approx((1000 * 0.5 + 1000 * 2.0) / 1e6)


# --- factory ----------------------------------------------------------------------------------
def test_build_hook_writer_picks_offline_or_model(caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(build_hook_writer(Settings(text_providers="offline")), OfflineHookWriter)
    with caplog.at_level(logging.WARNING):
        fallback = build_hook_writer(Settings(text_providers="anthropic,offline"))
    assert isinstance(fallback, OfflineHookWriter)
    assert "anthropic skipped: CONTENTFORGE_ANTHROPIC_API_KEY is not set" in caplog.text
    with FakeAnthropic(KEY) as server:
        settings = Settings(
            text_providers="anthropic,offline",
            anthropic_api_key=SecretStr(KEY),
            anthropic_base_url=server.url,
        )
        model_writer = build_hook_writer(settings)
        assert isinstance(model_writer, LlmHookWriter) and isinstance(model_writer, HookWriter)
        server.text(unruly_answer())
        hooks = model_writer.write_hooks(persona(), TEMPLATE, Platform.linkedin, seed=1)
    assert all(check_caption(h.caption, h.hashtags, Platform.linkedin) == [] for h in hooks)
    assert KEY not in repr(model_writer)
    with pytest.raises(NoProviderAvailable, match="CONTENTFORGE_OPENAI_API_KEY"):
        build_hook_writer(Settings(text_providers="openai"))


# --- image prompts ----------------------------------------------------------------------------
def words(n: int, start: str = "") -> str:
    filler = [
        "soft",
        "morning",
        "light",
        "over",
        "a",
        "quiet",
        "trail",
        "with",
        "mist",
        "and",
        "pine",
        "trees",
    ]
    return (start + " " + " ".join(filler[i % len(filler)] for i in range(n))).strip()


LORA_PERSONA = persona(lora=LoraSpec(source="maya.safetensors", trigger_word="mayalin"))


def test_llm_image_prompt_is_detailed_and_keeps_trigger_and_safety_negatives() -> None:
    with FakeAnthropic(KEY) as server:
        server.text(
            json.dumps({"prompt": words(130), "negative_terms": ["harsh shadows", "crowds", "nudity"]})
        )
        provider = ProviderChain(
            [
                __import__(
                    "contentforge.text.providers.anthropic_provider", fromlist=["x"]
                ).AnthropicProvider(api_key=SecretStr(KEY), model="claude-test", base_url=server.url, **FAST)
            ]
        )
        outcome = LlmImagePromptWriter(provider).build(LORA_PERSONA, TEMPLATE)
    assert outcome.source == "llm" and outcome.prompt_version == "image_prompt.v1"
    assert outcome.prompt.prompt.startswith("mayalin, ")
    assert 100 <= len(outcome.prompt.prompt.split()) <= 201
    assert outcome.prompt.negative_prompt.startswith(SAFETY_NEGATIVES)
    assert outcome.prompt.negative_prompt.endswith("harsh shadows, crowds")
    user = server.prompts[0]
    assert '"mayalin"' in user and LORA_PERSONA.appearance in user and TEMPLATE.lighting in user


def test_image_prompt_too_short_twice_falls_back_to_the_rules() -> None:
    with FakeOpenAI(KEY) as server:
        server.text(json.dumps({"prompt": words(20)})).text(json.dumps({"prompt": words(30)}))
        provider = OpenAIProvider(api_key=SecretStr(KEY), model="gpt-test", base_url=server.url, **FAST)
        outcome = LlmImagePromptWriter(ProviderChain([provider, OfflineEngine()])).build(
            LORA_PERSONA, TEMPLATE
        )
    assert outcome.source == "rules" and outcome.prompt == build_image_prompt(LORA_PERSONA, TEMPLATE)
    assert "has 30 words" in (outcome.fallback_reason or "")
    assert "has 20 words" in server.prompts[1]  # the repair prompt said what was wrong


def test_image_prompt_with_forbidden_words_falls_back_to_the_rules() -> None:
    with FakeOpenAI(KEY) as server:
        server.text(json.dumps({"prompt": words(120, start="nude model on a beach,")}))
        provider = OpenAIProvider(api_key=SecretStr(KEY), model="gpt-test", base_url=server.url, **FAST)
        outcome = LlmImagePromptWriter(provider).build(LORA_PERSONA, TEMPLATE)
    assert outcome.source == "rules" and "content policy" in (outcome.fallback_reason or "")
    assert outcome.prompt == build_image_prompt(LORA_PERSONA, TEMPLATE)


def test_build_image_prompt_writer_is_none_offline() -> None:
    assert build_image_prompt_writer(Settings(text_providers="offline")) is None
    assert build_image_prompt_writer(Settings(text_providers="openai,offline")) is None
    writer_ = build_image_prompt_writer(Settings(text_providers="openai", openai_api_key=SecretStr(KEY)))
    assert isinstance(writer_, LlmImagePromptWriter)
