"""The ``TextProvider`` protocol and the results every backend returns.

A result carries what the cost ledger and the piece record need: which provider and model
answered, tokens in and out, cost in USD, latency, the prompt template version and which providers
of a chain were tried and skipped before it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class TextResult:
    """One answer (or, for structured output, the sum of the calls that produced it)."""

    text: str
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    prompt_version: str | None = None
    calls: int = 1
    """Model calls behind this result (a repaired structured answer is 2)."""
    fallbacks: tuple[str, ...] = ()
    """``"provider: reason"`` for each provider of a chain that was tried first and failed."""


@dataclass(frozen=True)
class StructuredResult(Generic[T]):
    """A validated schema instance and the call(s) that produced it."""

    value: T
    result: TextResult
    prompt_version: str | None = None
    repaired: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def provider(self) -> str:
        return self.result.provider


CallListener = Callable[[TextResult], None]
"""Told by a model provider about each call it was paid for, e.g. to write it to the cost ledger.

Providers call it once per HTTP call that returned an answer, including a structured answer's
repair call and answers that later fail validation (they were paid for too); failed requests and
the offline engine, which cost nothing, never call it.
"""


@runtime_checkable
class TextProvider(Protocol):
    """Anything that answers a prompt with text, or with an instance of a pydantic schema.

    ``context`` carries the structured inputs behind the prompt (persona, template, platform...):
    model backends ignore it, since the prompt already says it in words; the offline engine
    answers from it with rules.
    """

    name: str

    def generate(
        self,
        prompt: str,
        *,
        system: str | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.7,
        prompt_version: str | None = None,
    ) -> TextResult: ...

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
    ) -> StructuredResult[T]: ...
