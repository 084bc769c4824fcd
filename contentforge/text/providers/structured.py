"""Structured output from any text model: ask for JSON, extract it, validate it, repair once.

Models wrap JSON in prose or Markdown fences, so ``extract_json`` looks in fences first, then at
the whole answer, then for the first decodable object or array. A value that does not validate
against the pydantic schema gets one repair attempt: the model is shown its answer and the
validation errors and asked again. A second failure raises ``InvalidModelOutput``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ValidationError

from contentforge.text.providers.errors import InvalidModelOutput
from contentforge.text.providers.protocol import StructuredResult, T, TextProvider, TextResult

log = logging.getLogger(__name__)

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n(.*?)```", re.DOTALL)
_MAX_ERRORS_SHOWN = 8


class NoJsonFound(ValueError):
    """The text contains no decodable JSON object or array."""


def extract_json(text: str) -> Any:
    """The first JSON value in ``text``: from a ```json fence, the whole text, or embedded in prose."""
    candidates = [body for lang, body in _FENCE_RE.findall(text) if lang.lower() in ("", "json", "json5")]
    for body in candidates:
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            continue
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[{\[]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict | list):
            return value
    raise NoJsonFound("no JSON object found in the answer")


def describe_validation_error(exc: ValidationError) -> str:
    """Validation errors in words a model (and a person) can act on."""
    lines = [
        f"- {'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}"
        for err in exc.errors()[:_MAX_ERRORS_SHOWN]
    ]
    if len(exc.errors()) > _MAX_ERRORS_SHOWN:
        lines.append(f"- ... and {len(exc.errors()) - _MAX_ERRORS_SHOWN} more")
    return "\n".join(lines)


def parse_structured(text: str, schema: type[T]) -> T:
    """Extract and validate; raises ``NoJsonFound`` or ``pydantic.ValidationError``."""
    return schema.model_validate(extract_json(text))


def json_instructions(schema: type[BaseModel]) -> str:
    """The suffix appended to a prompt that asks for a schema instance."""
    return (
        "\n\nAnswer with a single JSON object that validates against this JSON Schema, and nothing else "
        "(no commentary; a ```json fence is fine):\n"
        + json.dumps(schema.model_json_schema(), ensure_ascii=False, separators=(",", ":"))
    )


def repair_prompt(prompt: str, schema: type[BaseModel], answer: str, problem: str) -> str:
    """The second prompt: the original request, the rejected answer and what was wrong with it."""
    return (
        f"{prompt}{json_instructions(schema)}\n\n"
        f"Your previous answer could not be used:\n{answer[:4000]}\n\n"
        f"Problems:\n{problem}\n\n"
        "Reply again with only the corrected JSON object."
    )


def _combine(first: TextResult, second: TextResult) -> TextResult:
    return replace(
        second,
        input_tokens=first.input_tokens + second.input_tokens,
        output_tokens=first.output_tokens + second.output_tokens,
        cost_usd=first.cost_usd + second.cost_usd,
        latency_s=first.latency_s + second.latency_s,
        calls=first.calls + second.calls,
    )


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    return f"- {exc}"


def generate_structured_via_text(
    provider: TextProvider,
    prompt: str,
    schema: type[T],
    *,
    system: str | None = None,
    max_tokens: int = 1024,
    temperature: float = 0.7,
    prompt_version: str | None = None,
) -> StructuredResult[T]:
    """Ask ``provider`` for JSON, validate against ``schema``, repair once, else ``InvalidModelOutput``."""
    first = provider.generate(
        prompt + json_instructions(schema),
        system=system,
        max_tokens=max_tokens,
        temperature=temperature,
        prompt_version=prompt_version,
    )
    try:
        value = parse_structured(first.text, schema)
        return StructuredResult(value=value, result=first, prompt_version=prompt_version)
    except (NoJsonFound, ValidationError) as exc:
        problem = _problem(exc)
        log.info(
            "%s answer for %s did not validate; asking once to repair it", provider.name, schema.__name__
        )
    second = provider.generate(
        repair_prompt(prompt, schema, first.text, problem),
        system=system,
        max_tokens=max_tokens,
        temperature=min(temperature, 0.3),
        prompt_version=prompt_version,
    )
    combined = _combine(first, second)
    try:
        value = parse_structured(second.text, schema)
    except (NoJsonFound, ValidationError) as exc:
        raise InvalidModelOutput(
            f"answer for {schema.__name__} is invalid after one repair attempt:\n{_problem(exc)}",
            provider=provider.name,
            output=second.text,
            spent=combined,
        ) from None
    return StructuredResult(value=value, result=combined, prompt_version=prompt_version, repaired=True)


class StructuredViaText:
    """``generate_structured`` for model backends: ask in text, then extract, validate and repair.

    Mixed into the Anthropic and OpenAI providers, which differ only in how they produce text.
    """

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
        return generate_structured_via_text(
            self,  # type: ignore[arg-type]
            prompt,
            schema,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
            prompt_version=prompt_version,
        )
