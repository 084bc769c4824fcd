"""The offline text engine: deterministic answers from rules, no network, no model.

It answers only what it has rules for and says so otherwise; it never invents prose that
pretends to come from a model:

- ``HookDrafts``: delegated to ``OfflineHookWriter`` (persona, template, platform, seed and count
  come from the request ``context``);
- any other schema whose required fields the ``context`` supplies by name: validated from it;
- anything else (including free-text ``generate``): ``ProviderCannotAnswer``, so a chain moves on
  or the caller uses its own rule-based fallback.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from contentforge.domain.models import Persona, Platform, Template
from contentforge.text.hooks import OfflineHookWriter
from contentforge.text.providers.errors import ProviderCannotAnswer
from contentforge.text.providers.protocol import StructuredResult, T, TextResult
from contentforge.text.providers.schemas import HookDraft, HookDrafts
from contentforge.text.providers.structured import describe_validation_error


class OfflineEngine:
    """Rule-based ``TextProvider``; always available, costs nothing."""

    name = "offline"

    def __init__(self, hook_writer: OfflineHookWriter | None = None) -> None:
        self._hooks = hook_writer or OfflineHookWriter()

    def __repr__(self) -> str:
        return "OfflineEngine()"

    def generate(
        self,
        prompt: str,
        *,
        system: str | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.7,
        prompt_version: str | None = None,
    ) -> TextResult:
        raise ProviderCannotAnswer(
            "the offline engine writes no free text; it answers structured requests it has rules for "
            "(HookDrafts, or a schema whose fields the request context supplies). Configure a model "
            "provider in CONTENTFORGE_TEXT_PROVIDERS for free-text prompts",
            provider=self.name,
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
        started = time.perf_counter()
        context = dict(context or {})
        value: T
        if issubclass(schema, HookDrafts):
            value = schema.model_validate(self._hook_drafts(context).model_dump())
            model = self._hooks.name
        else:
            value = self._from_context(schema, context)
            model = "offline-rules"
        result = TextResult(
            text=value.model_dump_json(),
            provider=self.name,
            model=model,
            latency_s=time.perf_counter() - started,
            prompt_version=prompt_version,
        )
        return StructuredResult(value=value, result=result, prompt_version=prompt_version)

    def _hook_drafts(self, context: dict[str, Any]) -> HookDrafts:
        persona, template, platform = context.get("persona"), context.get("template"), context.get("platform")
        if not (isinstance(persona, Persona) and isinstance(template, Template) and platform):
            raise ProviderCannotAnswer(
                "offline hooks need 'persona' (Persona), 'template' (Template) and 'platform' in the context",
                provider=self.name,
            )
        hooks = self._hooks.write_hooks(
            persona,
            template,
            Platform(str(platform)),
            count=int(context.get("count", 5)),
            seed=int(context.get("seed", 0)),
        )
        return HookDrafts(
            hooks=[
                HookDraft(style=h.style, text=h.text, call_to_action=h.call_to_action, hashtags=h.hashtags)
                for h in hooks
            ]
        )

    def _from_context(self, schema: type[T], context: dict[str, Any]) -> T:
        fields = schema.model_fields
        supplied = {name: context[name] for name in fields if name in context}
        try:
            return schema.model_validate(supplied)
        except ValidationError as exc:
            missing = [n for n, f in fields.items() if f.is_required() and n not in supplied]
            why = f"missing {missing}" if missing else describe_validation_error(exc)
            raise ProviderCannotAnswer(
                f"no offline rules for {schema.__name__} and the request context cannot fill it ({why})",
                provider=self.name,
            ) from None
