"""OpenAI Chat Completions (``POST /v1/chat/completions``) through the official ``openai`` SDK.

The same class serves any OpenAI-compatible server through ``base_url``: llama.cpp's
``llama-server`` (``http://localhost:8080/v1``), Ollama (``http://localhost:11434/v1``) or vLLM
(``http://localhost:8000/v1``). Local servers need no key; the SDK still sends a placeholder.
SDK retries are off so ``retry.py`` is the one retry policy.

Structured answers from OpenAI itself use the ``json_schema`` response format with ``strict``
(``structured.openai_response_format``); local servers are asked in text by default, since their
support of ``response_format`` varies, and their JSON is extracted from the answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import openai
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
    openai_response_format,
)

NO_KEY = "sk-no-key-required"
"""Sent to local servers that ignore the key (the SDK refuses to build a client without one)."""


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, Mapping) else None
        if isinstance(message, str):
            return message
        if isinstance(error, str):
            return error
    return str(getattr(exc, "message", "") or exc)


class OpenAIProvider(StructuredViaText):
    """OpenAI or an OpenAI-compatible server."""

    def __init__(
        self,
        *,
        model: str,
        api_key: SecretStr | None = None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_attempts: int = 3,
        retry_base_s: float = 1.0,
        retry_max_s: float = 30.0,
        prices: Prices | None = None,
        on_call: CallListener | None = None,
        name: str = "openai",
        policy: OutboundPolicy | None = None,
        native_structured: bool | None = None,
    ) -> None:
        """``policy``: where requests may go (default ``CONTENTFORGE_OPENAI_BASE_URL``'s); the factory
        passes ``CONTENTFORGE_LOCAL_LLM_BASE_URL``'s for the local server. ``native_structured``:
        send the schema as a strict ``json_schema`` response format (default: for ``openai``, not
        for ``local``)."""
        self.name = name
        self.native_structured = name == "openai" if native_structured is None else native_structured
        self.model = model
        self._key = api_key
        self._attempts = max_attempts
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._prices = dict(prices or {})
        self._on_call = on_call
        policy = policy or OutboundPolicy.for_setting("openai_base_url")
        http = http_package_of(openai.DefaultHttpxClient)  # httpx, or its fork httpx2 in newer SDKs
        self._client = openai.OpenAI(
            api_key=api_key.get_secret_value() if api_key else NO_KEY,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=openai.DefaultHttpxClient(transport=policy.transport(http), trust_env=False),
        )
        policy.check_static(str(self._client.base_url))  # the SDK may take it from OPENAI_BASE_URL

    def __repr__(self) -> str:
        url = str(self._client.base_url)
        return f"OpenAIProvider(name={self.name!r}, model={self.model!r}, base_url={url!r})"

    def _error(self, exc: Exception) -> ProviderError:
        secrets = [self._key.get_secret_value() if self._key else None]
        redact_exception(exc, secrets)  # the SDK's error quotes the server, which may quote the key
        if (refused := refusal_in(exc)) is not None:
            return ProviderUnavailable(str(refused), provider=self.name)
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeout("request timed out", provider=self.name)
        if isinstance(exc, openai.APIConnectionError):
            return ProviderUnavailable(
                f"cannot connect to {self._client.base_url}: {scrub(str(exc), secrets)}", provider=self.name
            )
        if isinstance(exc, openai.APIStatusError):
            return error_for_status(
                exc.status_code,
                scrub(_api_message(exc), secrets),
                provider=self.name,
                retry_after=parse_retry_after(exc.response.headers),
            )
        return ProviderUnavailable(f"unexpected client error: {scrub(str(exc), secrets)}", provider=self.name)

    def _call_once(self, params: Mapping[str, Any]) -> Any:
        try:
            return self._client.chat.completions.create(**params)
        except openai.OpenAIError as exc:
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
        return self._complete(prompt, system, max_tokens, temperature, prompt_version, {})

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
        response_format = openai_response_format(schema) if self.native_structured else None
        extra = {"response_format": response_format} if response_format else {}
        result = self._complete(prompt, system, max_tokens, temperature, prompt_version, extra)
        if not extra:
            return result, NO_STRUCTURED_CONTENT
        try:  # a strict json_schema answer is exactly one JSON document
            return result, json.loads(result.text)
        except json.JSONDecodeError:  # a server that ignored the response format: extract as text
            return result, NO_STRUCTURED_CONTENT

    def _complete(
        self,
        prompt: str,
        system: str | None,
        max_tokens: int,
        temperature: float,
        prompt_version: str | None,
        extra: Mapping[str, Any],
    ) -> TextResult:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
        params = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            **extra,
        }
        started = time.perf_counter()
        completion, _ = call_with_retries(
            lambda: self._call_once(params),
            attempts=self._attempts,
            base_s=self._retry_base_s,
            max_s=self._retry_max_s,
            what=f"{self.name} {self.model}",
        )
        if not completion.choices:
            raise ProviderUnavailable("the answer has no choices", provider=self.name)
        message = completion.choices[0].message
        # a refusal to a structured request comes instead of content; it is what the model said
        text = message.content or getattr(message, "refusal", None) or ""
        usage = completion.usage
        input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0) if usage else 0
        output_tokens = int(getattr(usage, "completion_tokens", 0) or 0) if usage else 0
        model = completion.model or self.model
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
        return result
