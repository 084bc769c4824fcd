"""Anthropic Messages API (``POST /v1/messages``) through the official ``anthropic`` SDK.

The SDK's own retries are off (``max_retries=0``) so that one policy (``retry.py``) governs every
provider and every SDK error is mapped onto the typed errors in ``errors.py``. ``base_url`` points
the client at another server speaking the same API (a gateway, or a test server).

``temperature`` is accepted for the protocol's sake but not sent: the Messages API deprecated it
(newer Claude models answer 400 when it is present, and the SDK no longer takes it), and every
model accepts its absence.

Structured answers use tool use: one tool whose ``input_schema`` is the pydantic schema, forced with
``tool_choice``, so the answer arrives as the tool call's ``input`` (``structured.anthropic_tool``).
A server that answers in text instead (a gateway that drops tools) goes through JSON extraction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import anthropic
from pydantic import BaseModel, SecretStr

from contentforge.outbound import OutboundPolicy, OutboundRefused, http_package_of, refusal_in
from contentforge.redaction import redact_exception
from contentforge.text.providers.errors import (
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    error_for_status,
    parse_retry_after,
    scrub,
)
from contentforge.text.providers.pricing import Prices, cost_usd
from contentforge.text.providers.protocol import CallListener, TextResult
from contentforge.text.providers.retry import call_with_retries
from contentforge.text.providers.structured import (
    NO_STRUCTURED_CONTENT,
    StructuredAnswer,
    StructuredViaText,
    anthropic_tool,
)


class AnthropicProvider(StructuredViaText):
    """Claude models via the Messages API."""

    def __init__(
        self,
        *,
        api_key: SecretStr,
        model: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_attempts: int = 3,
        retry_base_s: float = 1.0,
        retry_max_s: float = 30.0,
        prices: Prices | None = None,
        on_call: CallListener | None = None,
        name: str = "anthropic",
        policy: OutboundPolicy | None = None,
    ) -> None:
        """``policy``: where requests may go (default ``CONTENTFORGE_ANTHROPIC_BASE_URL``'s)."""
        self.name = name
        self.model = model
        self._key = api_key
        self._attempts = max_attempts
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._prices = dict(prices or {})
        self._on_call = on_call
        policy = policy or OutboundPolicy.for_setting("anthropic_base_url")
        http = http_package_of(anthropic.DefaultHttpxClient)  # httpx, or its fork httpx2 in newer SDKs
        self._client = anthropic.Anthropic(
            api_key=api_key.get_secret_value(),
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=anthropic.DefaultHttpxClient(transport=policy.transport(http), trust_env=False),
        )
        policy.check_static(str(self._client.base_url))  # the SDK may take it from ANTHROPIC_BASE_URL

    def __repr__(self) -> str:
        return f"AnthropicProvider(model={self.model!r}, base_url={str(self._client.base_url)!r})"

    def _error(self, exc: Exception) -> ProviderError:
        secrets = [self._key.get_secret_value()]
        redact_exception(exc, secrets)  # the SDK's error quotes the server, which may quote the key
        if (refused := refusal_in(exc)) is not None:
            return ProviderUnavailable(str(refused), provider=self.name)
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderTimeout("request timed out", provider=self.name)
        if isinstance(exc, anthropic.APIConnectionError):
            return ProviderUnavailable(
                f"cannot connect to {self._client.base_url}: {scrub(str(exc), secrets)}", provider=self.name
            )
        if isinstance(exc, anthropic.APIStatusError):
            api_message = getattr(exc, "api_message", None)
            message = api_message if isinstance(api_message, str) else str(exc)
            return error_for_status(
                exc.status_code,
                scrub(message, secrets),
                provider=self.name,
                retry_after=parse_retry_after(exc.response.headers),
            )
        return ProviderUnavailable(f"unexpected client error: {scrub(str(exc), secrets)}", provider=self.name)

    def _call_once(self, params: Mapping[str, Any]) -> Any:
        try:
            return self._client.messages.create(**params)
        except anthropic.AnthropicError as exc:
            raise self._error(exc) from None
        except OutboundRefused as exc:  # a refused redirect hop can escape the SDK unwrapped
            raise ProviderUnavailable(str(exc), provider=self.name) from None

    def generate(
        self,
        prompt: str,
        *,
        system: str | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.7,
        prompt_version: str | None = None,
    ) -> TextResult:
        return self._complete(prompt, system, max_tokens, prompt_version, {})[0]

    def _structured_ask(
        self,
        prompt: str,
        schema: type[BaseModel],
        *,
        system: str | None,
        max_tokens: int,
        temperature: float,
        prompt_version: str | None,
    ) -> StructuredAnswer:
        tool = anthropic_tool(schema)
        extra = {"tools": [tool], "tool_choice": {"type": "tool", "name": tool["name"]}}
        return self._complete(prompt, system, max_tokens, prompt_version, extra, tool=tool["name"])

    def _complete(
        self,
        prompt: str,
        system: str | None,
        max_tokens: int,
        prompt_version: str | None,
        extra: Mapping[str, Any],
        *,
        tool: str | None = None,
    ) -> StructuredAnswer:
        """The answer, and the input of a call to ``tool`` when it made one (else no structured content)."""
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}],
            **extra,
        }
        if system:
            params["system"] = system
        started = time.perf_counter()
        message, _ = call_with_retries(
            lambda: self._call_once(params),
            attempts=self._attempts,
            base_s=self._retry_base_s,
            max_s=self._retry_max_s,
            what=f"{self.name} {self.model}",
        )
        content: Any = NO_STRUCTURED_CONTENT
        for block in message.content:
            if tool is not None and getattr(block, "type", None) == "tool_use" and block.name == tool:
                content = block.input
                break
        if content is NO_STRUCTURED_CONTENT:
            text = "".join(b.text for b in message.content if getattr(b, "type", None) == "text")
        else:  # the record of the call shows the structured answer as its text
            text = json.dumps(content, ensure_ascii=False)
        usage = message.usage
        input_tokens = int(getattr(usage, "input_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "output_tokens", 0) or 0)
        model = getattr(message, "model", None) or self.model
        result = TextResult(
            text=text,
            provider=self.name,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_usd(model, input_tokens, output_tokens, self._prices),
            latency_s=time.perf_counter() - started,
            prompt_version=prompt_version,
        )
        if self._on_call is not None:
            self._on_call(result)
        return result, content
