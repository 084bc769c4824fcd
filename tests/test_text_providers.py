"""Text providers against local servers speaking the Anthropic and OpenAI APIs: results, usage and
cost, retries, typed errors, the provider chain, the settings factory, secrets and the cost ledger."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import select
from support.llm_fakes import FakeAnthropic, FakeOpenAI

from contentforge.config import Settings
from contentforge.db import Repository, make_engine, migrate
from contentforge.db.models import CostEntryORM
from contentforge.domain.models import Persona
from contentforge.text.providers import (
    NoProviderAvailable,
    OfflineEngine,
    ProviderAuthError,
    ProviderChain,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    TextProvider,
    build_text_provider,
    record_text_cost,
)
from contentforge.text.providers.anthropic_provider import AnthropicProvider
from contentforge.text.providers.errors import parse_retry_after
from contentforge.text.providers.openai_provider import NO_KEY, OpenAIProvider
from contentforge.text.providers.pricing import cost_usd

KEY = "sk-test-SECRET-1234567890"
PRICES = {"claude-test": (3.0, 15.0), "gpt-test": (0.5, 2.0)}
FAST = {"retry_base_s": 0.01, "retry_max_s": 2.0, "max_attempts": 3, "timeout_s": 5.0, "prices": PRICES}


def anthropic(server: FakeAnthropic, key: str = KEY, **kw: object) -> AnthropicProvider:
    return AnthropicProvider(api_key=SecretStr(key), model="claude-test", base_url=server.url, **(FAST | kw))


def openai_(server: FakeOpenAI, key: str | None = KEY, **kw: object) -> OpenAIProvider:
    return OpenAIProvider(
        api_key=SecretStr(key) if key else None, model="gpt-test", base_url=server.url, **(FAST | kw)
    )


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# --- success, usage and cost ------------------------------------------------------------------
def test_anthropic_success_records_tokens_cost_and_sends_the_documented_request() -> None:
    with FakeAnthropic(KEY) as server:
        server.text("Hello there", input_tokens=1000, output_tokens=500)
        provider = anthropic(server)
        assert isinstance(provider, TextProvider)
        result = provider.generate(
            "Say hi", system="be brief", max_tokens=50, temperature=0.2, prompt_version="greet.v3"
        )
    assert result.text == "Hello there"
    assert (result.provider, result.model) == ("anthropic", "claude-test")
    assert (result.input_tokens, result.output_tokens) == (1000, 500)
    assert result.cost_usd == pytest.approx(1000 * 3 / 1e6 + 500 * 15 / 1e6)
    assert result.latency_s > 0 and result.prompt_version == "greet.v3"
    request = server.requests[0]
    assert KEY in (request.headers.get("x-api-key"), request.headers.get("authorization", "")[7:])
    assert request.body["system"] == "be brief"
    assert request.body["max_tokens"] == 50 and "temperature" not in request.body  # deprecated by the API
    assert request.body["messages"] == [{"role": "user", "content": "Say hi"}]


def test_openai_success_records_tokens_and_cost_with_system_message_first() -> None:
    with FakeOpenAI(KEY) as server:
        server.text("Bonjour", input_tokens=2000, output_tokens=1000)
        result = openai_(server).generate("Say hi in French", system="sys")
    assert (result.text, result.provider, result.model) == ("Bonjour", "openai", "gpt-test")
    assert result.cost_usd == pytest.approx(2000 * 0.5 / 1e6 + 1000 * 2.0 / 1e6)
    messages = server.requests[0].body["messages"]
    assert messages == [{"role": "system", "content": "sys"}, {"role": "user", "content": "Say hi in French"}]
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_local_openai_compatible_server_needs_no_key_and_costs_nothing_without_a_price() -> None:
    with FakeOpenAI(api_key=None) as server:
        server.text("local answer", model="llama-3.2-3b-instruct")
        provider = OpenAIProvider(name="local", model="llama-3.2-3b-instruct", base_url=server.url, **FAST)
        result = provider.generate("hi")
    assert (result.provider, result.model, result.cost_usd) == ("local", "llama-3.2-3b-instruct", 0.0)
    assert server.requests[0].headers["authorization"] == f"Bearer {NO_KEY}"


def test_prices_match_model_prefixes() -> None:
    assert cost_usd("claude-haiku-4-5-20251001", 1_000_000, 0, {"claude-haiku-4-5": (1.0, 5.0)}) == 1.0
    assert cost_usd("unknown-model", 1000, 1000, PRICES) == 0.0


# --- retries and typed errors -----------------------------------------------------------------
def test_rate_limit_with_retry_after_is_waited_out_then_succeeds() -> None:
    with FakeAnthropic(KEY) as server:
        server.fail(429, "rate_limit_error", "slow down", headers={"retry-after": "0.4"})
        server.text("ok", input_tokens=5, output_tokens=5)
        started = time.perf_counter()
        result = anthropic(server).generate("x")
        elapsed = time.perf_counter() - started
    assert result.text == "ok" and len(server.requests) == 2
    assert elapsed >= 0.4, "the server's retry-after was not honoured"


def test_rate_limit_that_persists_raises_rate_limited_with_the_hint() -> None:
    with FakeOpenAI(KEY) as server:
        for _ in range(3):
            server.fail(429, "rate_limit_exceeded", "too many", headers={"retry-after-ms": "10"})
        with pytest.raises(ProviderRateLimited) as info:
            openai_(server).generate("x")
    assert len(server.requests) == 3
    assert info.value.retry_after == pytest.approx(0.01)
    assert info.value.provider == "openai"


def test_server_errors_are_retried_then_succeed() -> None:
    with FakeAnthropic(KEY) as server:
        server.fail(529, "overloaded_error", "Overloaded")
        server.fail(500, "api_error", "boom")
        server.text("third time")
        assert anthropic(server).generate("x").text == "third time"
    assert len(server.requests) == 3


def test_auth_error_is_not_retried() -> None:
    with (
        FakeAnthropic("the-right-key") as server,
        pytest.raises(ProviderAuthError, match="check the API key"),
    ):
        anthropic(server, key=KEY).generate("x")
    assert len(server.requests) == 1


def test_timeout_raises_provider_timeout_after_retries() -> None:
    with FakeOpenAI(KEY) as server:
        server.text("late", delay_s=1.5)
        server.text("late", delay_s=1.5)
        with pytest.raises(ProviderTimeout):
            openai_(server, timeout_s=0.3, max_attempts=2).generate("x")
    assert len(server.requests) == 2


def test_unreachable_server_is_unavailable() -> None:
    provider = OpenAIProvider(
        api_key=SecretStr(KEY), model="gpt-test", base_url=closed_port_url() + "/v1", **FAST
    )
    with pytest.raises(ProviderUnavailable, match="cannot connect"):
        provider.generate("x")


def test_bad_request_is_unavailable_without_retry() -> None:
    with FakeAnthropic(KEY) as server:
        server.fail(404, "not_found_error", "model: claude-nope")
        with pytest.raises(ProviderUnavailable, match=r"HTTP 404.*claude-nope"):
            anthropic(server).generate("x")
    assert len(server.requests) == 1


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({}) is None


# --- the chain --------------------------------------------------------------------------------
def test_chain_moves_past_auth_error_and_records_who_answered() -> None:
    with FakeAnthropic("other-key") as a, FakeOpenAI(KEY) as o:
        o.text("from openai")
        chain = ProviderChain([anthropic(a), openai_(o)])
        result = chain.generate("x")
    assert result.provider == "openai" and result.text == "from openai"
    assert len(result.fallbacks) == 1 and result.fallbacks[0].startswith("anthropic: ")
    assert "authentication failed" in result.fallbacks[0]


def test_chain_order_first_working_provider_answers() -> None:
    with FakeAnthropic(KEY) as a, FakeOpenAI(KEY) as o:
        a.text("from anthropic")
        o.text("from openai")
        assert ProviderChain([anthropic(a), openai_(o)]).generate("x").provider == "anthropic"
        assert ProviderChain([openai_(o), anthropic(a)]).generate("x").provider == "openai"
        assert len(a.requests) == 1 and len(o.requests) == 1


def test_chain_moves_on_after_exhausted_rate_limit_retries() -> None:
    with FakeAnthropic(KEY) as a, FakeOpenAI(KEY) as o:
        a.fail(429, "rate_limit_error", headers={"retry-after": "0"})
        a.fail(429, "rate_limit_error", headers={"retry-after": "0"})
        o.text("fallback")
        result = ProviderChain([anthropic(a, max_attempts=2), openai_(o)]).generate("x")
    assert result.provider == "openai" and len(a.requests) == 2
    assert "rate limited" in result.fallbacks[0]


def test_chain_with_every_provider_failing_names_each_reason() -> None:
    with FakeAnthropic("other") as a:
        chain = ProviderChain([anthropic(a), OfflineEngine()])
        with pytest.raises(NoProviderAvailable) as info:
            chain.generate("free text")
    assert [name for name, _ in info.value.failures] == ["anthropic", "offline"]
    assert "authentication failed" in str(info.value) and "offline engine writes no free text" in str(
        info.value
    )


# --- settings and factory ---------------------------------------------------------------------
def test_factory_builds_the_configured_order_and_logs_skipped_providers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeAnthropic(KEY) as a, FakeOpenAI(KEY) as o:
        settings = Settings(
            text_providers="openai, anthropic ,local,offline",
            anthropic_api_key=SecretStr(KEY),
            anthropic_base_url=a.url,
            anthropic_model="claude-test",
            openai_api_key=None,
            openai_base_url=o.url,
            text_prices=PRICES,
        )
        with caplog.at_level(logging.WARNING, logger="contentforge.text.providers.factory"):
            chain = build_text_provider(settings)
        a.text("ok", input_tokens=100, output_tokens=100)
        result = chain.generate("x")
    assert chain.names == ["anthropic", "offline"]
    assert dict(chain.skipped) == {
        "openai": "CONTENTFORGE_OPENAI_API_KEY is not set",
        "local": "CONTENTFORGE_LOCAL_LLM_BASE_URL is not set",
    }
    assert "openai skipped: CONTENTFORGE_OPENAI_API_KEY is not set" in caplog.text
    assert result.provider == "anthropic" and result.cost_usd == pytest.approx(100 * 18 / 1e6)


def test_factory_with_nothing_runnable_says_what_to_set() -> None:
    with pytest.raises(NoProviderAvailable, match="CONTENTFORGE_ANTHROPIC_API_KEY is not set"):
        build_text_provider(Settings(text_providers="anthropic"))


def test_factory_builds_a_local_provider_from_base_url_and_model() -> None:
    with FakeOpenAI(api_key=None) as server:
        server.text("hi from llama")
        chain = build_text_provider(
            Settings(text_providers="local", local_llm_base_url=server.url, local_llm_model="qwen2.5:0.5b")
        )
        result = chain.generate("x")
    assert (result.provider, result.model) == ("local", "gpt-test")
    assert server.requests[0].body["model"] == "qwen2.5:0.5b"


def test_settings_reject_unknown_or_repeated_providers() -> None:
    with pytest.raises(ValidationError, match="unknown text providers"):
        Settings(text_providers="anthropic,gemini")
    with pytest.raises(ValidationError, match="repeat"):
        Settings(text_providers="offline,offline")
    assert Settings().text_provider_names == ["offline"]


# --- secrets ----------------------------------------------------------------------------------
def test_secrets_never_appear_in_errors_or_reprs() -> None:
    with FakeAnthropic("right") as a, FakeOpenAI("right") as o:
        # servers that echo the key back in their error message
        a.api_key = o.api_key = None
        a.check = lambda headers, body: a.error(
            401, "authentication_error", f"bad key {headers['authorization']}"
        )
        o.check = lambda headers, body: o.error(
            401, "invalid_api_key", f"Incorrect key {headers['authorization']}"
        )
        pa, po = anthropic(a), openai_(o)
        chain = ProviderChain([pa, po])
        with pytest.raises(NoProviderAvailable) as info:
            chain.generate("x")
    text = str(info.value) + repr(info.value) + repr(chain) + repr(pa) + repr(po)
    assert "bad key" in text and "Incorrect key" in text
    assert KEY not in text and "[redacted]" in text
    settings = Settings(anthropic_api_key=SecretStr(KEY))
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())


# --- cost ledger ------------------------------------------------------------------------------
def test_record_text_cost_writes_a_ledger_entry_without_the_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cf.db'}"
    migrate(url)
    engine = make_engine(url)
    repo = Repository(engine)
    repo.upsert_persona(
        Persona(
            id="mia",
            name="Mia",
            niche="fitness",
            appearance="athletic woman",
            personality_traits=["upbeat"],
            interests=["running"],
            tone="warm",
            platforms=["instagram"],
        )
    )
    repo.create_batch(
        batch_id="b1",
        persona_id="mia",
        platform="instagram",
        num_pieces=1,
        tier_mix={"safe": 1.0, "suggestive": 0.0},
        seed=1,
        params={},
        flow_run_id=None,
    )
    with FakeAnthropic(KEY) as server:
        server.text("caption", input_tokens=1200, output_tokens=300)
        result = anthropic(server).generate("x", prompt_version="hooks.v1")
    record_text_cost(repo, "b1", result)
    with engine.connect() as conn:
        row = conn.execute(select(CostEntryORM)).one()
    engine.dispose()
    assert (row.kind, row.provider) == ("text", "anthropic")
    assert row.amount_usd == pytest.approx(1200 * 3 / 1e6 + 300 * 15 / 1e6)
    assert row.detail["model"] == "claude-test" and row.detail["tokens"] == 1500
    assert row.detail["prompt_version"] == "hooks.v1"
    assert KEY not in str(row.detail)


def test_on_call_hears_each_paid_call_once_and_never_a_failed_request() -> None:
    from contentforge.text.providers import InvalidModelOutput
    from contentforge.text.providers.schemas import HookDrafts

    heard: list[tuple[str, int, int]] = []

    def listen(result: object) -> None:
        heard.append((result.provider, result.input_tokens, result.output_tokens))  # type: ignore[attr-defined]

    with FakeAnthropic(KEY) as a, FakeOpenAI(KEY) as o:
        a.fail(429, "rate_limit_error", headers={"retry-after": "0"}).text(
            "ok", input_tokens=5, output_tokens=6
        )
        anthropic(a, on_call=listen).generate("x")
        o.fail(401, "invalid_request_error", "Incorrect key")
        with pytest.raises(ProviderAuthError):
            openai_(o, on_call=listen).generate("x")
        # an answer that never validates was still paid for, the repair call too
        o.text('{"hooks": [}', input_tokens=7, output_tokens=8).text(
            "no JSON", input_tokens=9, output_tokens=1
        )
        with pytest.raises(InvalidModelOutput):
            openai_(o, on_call=listen).generate_structured("hooks please", HookDrafts)
    assert heard == [("anthropic", 5, 6), ("openai", 7, 8), ("openai", 9, 1)]
