"""A provider chain: ask each configured provider in order until one answers.

Inside a provider, rate limits, timeouts and 5xx are retried (``retry.py``); when a provider
still fails (auth error, unavailable, retries exhausted, invalid output, or it cannot answer the
request) the chain logs why and asks the next. The answer records which provider gave it and
which were tried before (``TextResult.fallbacks``). Providers skipped at build time (no key, no
base URL) are listed in ``skipped`` with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar, cast

from contentforge.text.providers.errors import NoProviderAvailable, ProviderError
from contentforge.text.providers.protocol import StructuredResult, T, TextProvider, TextResult

log = logging.getLogger(__name__)
R = TypeVar("R")


class ProviderChain:
    """``TextProvider`` that tries ``providers`` in order."""

    name = "chain"

    def __init__(self, providers: Sequence[TextProvider], skipped: Sequence[tuple[str, str]] = ()) -> None:
        self.providers = list(providers)
        self.skipped = list(skipped)
        if not self.providers:
            raise NoProviderAvailable("no text provider can run", self.skipped)

    def __repr__(self) -> str:
        return f"ProviderChain({[p.name for p in self.providers]}, skipped={[n for n, _ in self.skipped]})"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.providers]

    def _run(self, what: str, call: Callable[[TextProvider], R], result_of: Callable[[R], TextResult]) -> R:
        failures: list[tuple[str, str]] = []
        for provider in self.providers:
            try:
                answer = call(provider)
            except ProviderError as exc:
                failures.append((provider.name, str(exc)))
                log.warning(
                    "text provider %s failed for %s, trying the next one: %s", provider.name, what, exc
                )
                continue
            if failures:
                log.info("%s answered by %s after %s failed", what, provider.name, [n for n, _ in failures])
            # The same kind of answer back (TextResult or StructuredResult), fallbacks noted.
            return cast(R, self._with_fallbacks(answer, result_of(answer), failures))
        raise NoProviderAvailable(f"every text provider failed for {what}", failures)

    @staticmethod
    def _with_fallbacks(answer: Any, result: TextResult, failures: list[tuple[str, str]]) -> Any:
        if not failures:
            return answer
        noted = replace(result, fallbacks=tuple(f"{name}: {reason}" for name, reason in failures))
        if isinstance(answer, StructuredResult):
            return replace(answer, result=noted)
        return noted

    def generate(
        self,
        prompt: str,
        *,
        system: str | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.7,
        prompt_version: str | None = None,
    ) -> TextResult:
        return self._run(
            f"text ({prompt_version or 'ad-hoc prompt'})",
            lambda p: p.generate(
                prompt,
                system=system,
                max_tokens=max_tokens,
                temperature=temperature,
                prompt_version=prompt_version,
            ),
            lambda r: r,
        )

    def generate_structured(
        self,
        prompt: str,
        schema: type[T],
        *,
        system: str | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.7,
        prompt_version: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> StructuredResult[T]:
        return self._run(
            f"{schema.__name__} ({prompt_version or 'ad-hoc prompt'})",
            lambda p: p.generate_structured(
                prompt,
                schema,
                system=system,
                max_tokens=max_tokens,
                temperature=temperature,
                prompt_version=prompt_version,
                context=context,
            ),
            lambda r: r.result,
        )
