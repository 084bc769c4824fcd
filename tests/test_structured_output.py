"""Structured output: JSON extraction, validation, one repair attempt, the offline engine's rule-based
answers, and prompt versions recorded with results."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field, SecretStr
from support.llm_fakes import FakeAnthropic, FakeOpenAI

from contentforge.catalog import load_templates
from contentforge.domain.models import HookStyle, Persona, Platform
from contentforge.errors import InvalidInput
from contentforge.text.hooks import OfflineHookWriter
from contentforge.text.platform_rules import check_caption
from contentforge.text.prompt_library import load_prompt, prompt_text
from contentforge.text.providers import (
    InvalidModelOutput,
    NoProviderAvailable,
    OfflineEngine,
    ProviderCannotAnswer,
    ProviderChain,
)
from contentforge.text.providers.anthropic_provider import AnthropicProvider
from contentforge.text.providers.openai_provider import OpenAIProvider
from contentforge.text.providers.schemas import HookDrafts, ImagePromptDraft
from contentforge.text.providers.structured import NoJsonFound, extract_json

KEY = "sk-structured-test-key"
FAST = {"retry_base_s": 0.01, "max_attempts": 2, "timeout_s": 5.0, "prices": {"claude-test": (3.0, 15.0)}}


class Caption(BaseModel):
    title: str = Field(min_length=3)
    likes: int = Field(ge=0)
    tags: list[str] = Field(default_factory=list)


def anthropic(server: FakeAnthropic) -> AnthropicProvider:
    return AnthropicProvider(api_key=SecretStr(KEY), model="claude-test", base_url=server.url, **FAST)


def persona() -> Persona:
    return Persona(
        id="maya",
        name="Maya Lin",
        niche="fitness",
        appearance="athletic woman, dark hair",
        personality_traits=["disciplined", "playful"],
        interests=["trail running"],
        tone="warm and upbeat",
        platforms=["instagram"],
    )


# --- extraction -------------------------------------------------------------------------------
def test_extracts_json_from_fences_prose_and_plain_text() -> None:
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Sure! Here it is:\n```json\n{"a": {"b": [1, 2]}}\n```\nEnjoy.') == {
        "a": {"b": [1, 2]}
    }
    assert extract_json("```\n[1, 2]\n```") == [1, 2]
    assert extract_json('The answer is {"text": "a {brace} inside", "n": 2} as requested.') == {
        "text": "a {brace} inside",
        "n": 2,
    }
    # a broken fence is skipped and the valid object after it is found
    assert extract_json('```json\n{"a": \n```\nthen {"a": 3}') == {"a": 3}
    with pytest.raises(NoJsonFound):
        extract_json("I cannot help with that {not json}")


# --- validation and repair against the vendor APIs --------------------------------------------
def test_json_in_code_fences_is_extracted_and_validated() -> None:
    with FakeOpenAI(KEY) as server:
        server.text('Here you go:\n```json\n{"title": "Sunrise run", "likes": 12, "tags": ["run"]}\n```')
        provider = OpenAIProvider(api_key=SecretStr(KEY), model="gpt-test", base_url=server.url, **FAST)
        answer = provider.generate_structured("Describe the post", Caption, prompt_version="caption.v2")
    assert answer.value == Caption(title="Sunrise run", likes=12, tags=["run"])
    assert not answer.repaired and answer.result.calls == 1
    assert answer.prompt_version == answer.result.prompt_version == "caption.v2"
    # the schema was sent with the request
    assert '"likes"' in server.prompts[0] and "JSON Schema" in server.prompts[0]


def test_invalid_json_is_repaired_once_with_the_validation_error() -> None:
    with FakeAnthropic(KEY) as server:
        server.text('{"title": "Hi", "likes": -3}', input_tokens=100, output_tokens=20)
        server.text('{"title": "Hello there", "likes": 3}', input_tokens=150, output_tokens=25)
        answer = anthropic(server).generate_structured("Describe the post", Caption, prompt_version="c.v1")
    assert answer.value == Caption(title="Hello there", likes=3)
    assert answer.repaired and answer.result.calls == 2
    assert (answer.result.input_tokens, answer.result.output_tokens) == (250, 45)
    assert answer.result.cost_usd == pytest.approx((250 * 3 + 45 * 15) / 1e6)
    repair = server.prompts[1]
    assert '{"title": "Hi", "likes": -3}' in repair
    assert "title: String should have at least 3 characters" in repair
    assert "likes: Input should be greater than or equal to 0" in repair


def test_prose_without_json_is_repaired() -> None:
    with FakeAnthropic(KEY) as server:
        server.text("Sure, the title is Sunrise and it has 4 likes.")
        server.text('{"title": "Sunrise", "likes": 4}')
        answer = anthropic(server).generate_structured("x", Caption)
    assert answer.value.likes == 4 and answer.repaired
    assert "no JSON object found" in server.prompts[1]


def test_invalid_twice_raises_invalid_model_output_with_what_was_spent() -> None:
    with FakeAnthropic(KEY) as server:
        server.text('{"title": "ok title"}', input_tokens=10, output_tokens=5)
        server.text('{"title": "ok title", "likes": "many"}', input_tokens=12, output_tokens=6)
        with pytest.raises(InvalidModelOutput) as info:
            anthropic(server).generate_structured("x", Caption)
    assert "after one repair attempt" in str(info.value) and "likes" in str(info.value)
    assert info.value.provider == "anthropic" and '"many"' in info.value.output
    assert info.value.spent.input_tokens == 22 and info.value.spent.calls == 2
    assert len(server.requests) == 2


def test_chain_moves_to_the_next_provider_after_invalid_output() -> None:
    with FakeAnthropic(KEY) as a, FakeOpenAI(KEY) as o:
        a.text("no json").text("still no json")
        o.text('{"title": "From OpenAI", "likes": 1}')
        chain = ProviderChain(
            [
                anthropic(a),
                OpenAIProvider(api_key=SecretStr(KEY), model="gpt-test", base_url=o.url, **FAST),
            ]
        )
        answer = chain.generate_structured("x", Caption)
    assert answer.provider == "openai" and answer.value.title == "From OpenAI"
    assert "invalid after one repair attempt" in answer.result.fallbacks[0]


def test_image_prompt_schema_enforces_100_to_200_words() -> None:
    ImagePromptDraft(prompt=" ".join(["word"] * 150))
    with pytest.raises(ValueError, match="has 20 words"):
        ImagePromptDraft(prompt=" ".join(["word"] * 20))


# --- offline engine ---------------------------------------------------------------------------
def test_offline_engine_answers_hook_drafts_from_the_offline_writer() -> None:
    template = load_templates()[0]
    context = {
        "persona": persona(),
        "template": template,
        "platform": Platform.instagram,
        "count": 5,
        "seed": 7,
    }
    answer = OfflineEngine().generate_structured(
        "(prompt text is not read)", HookDrafts, context=context, prompt_version="hooks.v1"
    )
    expected = OfflineHookWriter().write_hooks(persona(), template, Platform.instagram, count=5, seed=7)
    assert [(d.style, d.text, d.hashtags) for d in answer.value.hooks] == [
        (h.style, h.text, h.hashtags) for h in expected
    ]
    assert len({d.style for d in answer.value.hooks}) == 5
    assert (answer.provider, answer.result.cost_usd, answer.result.input_tokens) == ("offline", 0.0, 0)
    assert answer.prompt_version == "hooks.v1"
    assert HookDrafts.model_validate(json.loads(answer.result.text)) == answer.value
    for draft in answer.value.hooks:
        caption = "\n\n".join([draft.text, draft.call_to_action, " ".join(f"#{t}" for t in draft.hashtags)])
        assert check_caption(caption, draft.hashtags, "instagram") == []


def test_offline_engine_fills_a_schema_from_context_or_says_it_cannot() -> None:
    engine = OfflineEngine()
    answer = engine.generate_structured("x", Caption, context={"title": "From rules", "likes": 2, "other": 1})
    assert answer.value == Caption(title="From rules", likes=2)
    with pytest.raises(ProviderCannotAnswer, match=r"no offline rules for Caption.*missing \['likes'\]"):
        engine.generate_structured("x", Caption, context={"title": "Only a title"})
    with pytest.raises(ProviderCannotAnswer, match="need 'persona'"):
        engine.generate_structured("x", HookDrafts, context={})
    with pytest.raises(ProviderCannotAnswer, match="writes no free text"):
        engine.generate("Write me a poem")
    with pytest.raises(ProviderCannotAnswer):
        engine.generate_structured("x", ImagePromptDraft, context={"persona": persona()})


def test_chain_of_only_offline_reports_why_it_cannot_answer() -> None:
    with pytest.raises(NoProviderAvailable, match=r"offline: .*no offline rules for Caption"):
        ProviderChain([OfflineEngine()]).generate_structured("x", Caption)


# --- prompt library ---------------------------------------------------------------------------
def test_prompt_files_are_versioned_and_rendered(tmp_path) -> None:
    hooks = load_prompt("hooks")
    assert hooks.id == "hooks.v1" and "$hook_max_chars" in hooks.user and hooks.system
    text, version = prompt_text("image_prompt")
    assert version == "image_prompt.v1" and "100 to 200 words" in text
    (tmp_path / "demo.v1.md").write_text("## user\nold $x", encoding="utf-8")
    (tmp_path / "demo.v2.md").write_text(
        "<!-- note -->\n## system\nsys {json}\n## user\nnew $x", encoding="utf-8"
    )
    latest = load_prompt("demo", directory=tmp_path)
    assert latest.id == "demo.v2" and latest.render(x="1") == ("sys {json}", "new 1")
    assert load_prompt("demo", 1, directory=tmp_path).render(x="2") == ("", "old 2")
    with pytest.raises(InvalidInput, match="needs the field 'x'"):
        latest.render()
    with pytest.raises(InvalidInput, match="no version 3"):
        load_prompt("demo", 3, directory=tmp_path)
    with pytest.raises(InvalidInput, match="no prompt named"):
        load_prompt("nope", directory=tmp_path)


def test_hook_styles_are_known_to_the_prompt() -> None:
    user = load_prompt("hooks").user
    assert all(style.value in user for style in HookStyle)


# --- native structured output -------------------------------------------------------------------
class Profile(BaseModel):
    """A schema strict mode cannot express: a free-form mapping."""

    scores: dict[str, int]


@pytest.fixture
def no_prose_extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if an answer goes through the JSON-in-prose extractor."""

    def refuse(text: str) -> object:
        raise AssertionError(f"extract_json was used on {text!r}")

    monkeypatch.setattr("contentforge.text.providers.structured.extract_json", refuse)


def openai_(server: FakeOpenAI) -> OpenAIProvider:
    return OpenAIProvider(api_key=SecretStr(KEY), model="gpt-test", base_url=server.url, **FAST)


def test_openai_sends_a_strict_json_schema_and_reads_the_answer_natively(no_prose_extraction: None) -> None:
    with FakeOpenAI(KEY) as server:
        server.structured({"title": "Sunrise run", "likes": 12, "tags": ["run"]})
        answer = openai_(server).generate_structured("Describe the post", Caption, prompt_version="c.v1")
    assert answer.value == Caption(title="Sunrise run", likes=12, tags=["run"]) and not answer.repaired
    response_format = server.requests[0].body["response_format"]
    assert response_format["type"] == "json_schema"
    spec = response_format["json_schema"]
    assert spec["name"] == "Caption" and spec["strict"] is True
    schema = spec["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"title", "likes", "tags"}  # strict: every property required
    assert "minLength" not in json.dumps(schema) and "default" not in schema["properties"]["tags"]


def test_a_native_answer_that_breaks_the_schema_is_repaired_natively(no_prose_extraction: None) -> None:
    with FakeOpenAI(KEY) as server:
        server.structured({"title": "Hi", "likes": -3, "tags": []})  # strict mode keeps shape, not bounds
        server.structured({"title": "Hello there", "likes": 3, "tags": []})
        answer = openai_(server).generate_structured("Describe the post", Caption)
    assert answer.value == Caption(title="Hello there", likes=3) and answer.repaired
    assert all("response_format" in r.body for r in server.requests)
    assert "title: String should have at least 3 characters" in server.prompts[1]


def test_local_servers_and_free_form_schemas_fall_back_to_extraction() -> None:
    with FakeOpenAI(api_key=None) as server:
        server.text('Sure:\n```json\n{"title": "Local run", "likes": 1}\n```')
        local = OpenAIProvider(name="local", model="llama", base_url=server.url, **FAST)
        assert local.generate_structured("x", Caption).value.title == "Local run"
    assert "response_format" not in server.requests[0].body
    with FakeOpenAI(KEY) as server:
        server.text('{"scores": {"wit": 3}}')
        assert openai_(server).generate_structured("x", Profile).value.scores == {"wit": 3}
    assert "response_format" not in server.requests[0].body  # strict mode cannot name the keys
    with FakeOpenAI(api_key=None) as server:  # a local server known to honour response_format
        server.structured({"title": "Local strict", "likes": 2, "tags": []})
        known = OpenAIProvider(
            name="local",
            model="llama",
            base_url=server.url,
            native_structured=True,
            **FAST,
        )
        assert known.generate_structured("x", Caption).value.title == "Local strict"
    assert server.requests[0].body["response_format"]["json_schema"]["strict"] is True


def test_anthropic_forces_a_tool_with_the_schema_and_reads_its_input(no_prose_extraction: None) -> None:
    with FakeAnthropic(KEY) as server:
        server.tool_call("Caption", {"title": "Trail notes", "likes": 5, "tags": ["trail"]})
        answer = anthropic(server).generate_structured("Describe the post", Caption, prompt_version="c.v1")
    assert answer.value == Caption(title="Trail notes", likes=5, tags=["trail"])
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "Caption"}
    [tool] = body["tools"]
    assert tool["name"] == "Caption" and tool["input_schema"] == Caption.model_json_schema()
    assert json.loads(answer.result.text) == {"title": "Trail notes", "likes": 5, "tags": ["trail"]}


def test_anthropic_answering_in_text_despite_the_tool_is_extracted() -> None:
    with FakeAnthropic(KEY) as server:
        server.text('Here: {"title": "Gateway text", "likes": 2}')
        answer = anthropic(server).generate_structured("x", Caption)
    assert answer.value.title == "Gateway text" and "tools" in server.requests[0].body
