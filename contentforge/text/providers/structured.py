"""Structured output from any text model: ask for JSON, extract it, validate it, repair once.

Where the API offers native structured output the provider uses it (OpenAI's ``json_schema``
response format with ``strict``, Anthropic's tool use with a forced tool whose ``input_schema`` is
the schema) and the decoded content is validated as it came, without looking for JSON in prose.
Otherwise (local OpenAI-compatible servers, or an answer without structured content) models wrap
JSON in prose or Markdown fences, so ``extract_json`` looks in fences first, then at the whole
answer, then for the first decodable object or array. A value that does not validate against the
pydantic schema gets one repair attempt: the model is shown its answer and the validation errors
and asked again. A second failure raises ``InvalidModelOutput``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

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


NO_STRUCTURED_CONTENT = object()
"""What a provider returns as the structured value when its answer came as text only."""

StructuredAnswer = tuple[TextResult, Any]
"""A model's answer and its structured content, decoded (or ``NO_STRUCTURED_CONTENT``)."""


class StructuredAsk(Protocol):
    def __call__(
        self,
        prompt: str,
        schema: type[BaseModel],
        *,
        system: str | None,
        max_tokens: int,
        temperature: float,
        prompt_version: str | None,
    ) -> StructuredAnswer: ...


def _value(answer: StructuredAnswer, schema: type[T]) -> T:
    result, content = answer
    if content is NO_STRUCTURED_CONTENT:
        return parse_structured(result.text, schema)
    return schema.model_validate(content)


_VALUE_CONSTRAINTS = frozenset(
    {
        "default",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    }
)


def _without_value_constraints(node: Any, *, in_properties: bool = False) -> Any:
    if isinstance(node, list):
        return [_without_value_constraints(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: _without_value_constraints(value, in_properties=key == "properties" and not in_properties)
        for key, value in node.items()
        if in_properties or key not in _VALUE_CONSTRAINTS
    }


def _strict_compatible(node: Any) -> bool:
    """No free-form objects (``dict[str, X]`` fields): strict mode needs every key named."""
    if isinstance(node, list):
        return all(_strict_compatible(item) for item in node)
    if not isinstance(node, dict):
        return True
    if node.get("type") == "object" and ("properties" not in node or node.get("additionalProperties")):
        return False
    return all(_strict_compatible(value) for value in node.values())


def openai_response_format(schema: type[BaseModel]) -> dict[str, Any] | None:
    """The ``response_format`` that makes OpenAI answer with an instance of ``schema``, or None when
    the schema cannot be strict (a free-form mapping field): then the answer is asked for in text.

    The SDK's own ``to_strict_json_schema`` (what ``chat.completions.parse`` sends) names every
    property as required and closes every object. Value constraints (lengths, bounds, patterns,
    defaults) are left out, as strict mode accepts only part of them: the answer is validated
    against the full pydantic schema afterwards, with the usual one repair.
    """
    from openai.lib._pydantic import to_strict_json_schema

    strict = to_strict_json_schema(schema)
    if not _strict_compatible(strict):
        return None
    return {
        "type": "json_schema",
        "json_schema": {
            "name": schema.__name__[:64],
            "schema": _without_value_constraints(strict),
            "strict": True,
        },
    }


def anthropic_tool(schema: type[BaseModel]) -> dict[str, Any]:
    """The tool whose input is an instance of ``schema``; forced with ``tool_choice``."""
    return {
        "name": schema.__name__[:64],
        "description": f"Record the answer as a {schema.__name__} object.",
        "input_schema": schema.model_json_schema(),
    }


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
    ask: StructuredAsk | None = None,
) -> StructuredResult[T]:
    """Ask ``provider`` for JSON, validate against ``schema``, repair once, else ``InvalidModelOutput``.

    ``ask`` is the provider's native structured call (see the module docstring); without it the
    answer is plain text and its JSON is extracted.
    """

    def plain(prompt: str, schema: type[BaseModel], **kw: Any) -> StructuredAnswer:
        return provider.generate(prompt, **kw), NO_STRUCTURED_CONTENT

    call: Callable[..., StructuredAnswer] = ask or plain
    answer = call(
        prompt + json_instructions(schema),
        schema,
        system=system,
        max_tokens=max_tokens,
        temperature=temperature,
        prompt_version=prompt_version,
    )
    first = answer[0]
    try:
        value = _value(answer, schema)
        return StructuredResult(value=value, result=first, prompt_version=prompt_version)
    except (NoJsonFound, ValidationError) as exc:
        problem = _problem(exc)
        log.info(
            "%s answer for %s did not validate; asking once to repair it", provider.name, schema.__name__
        )
    answer = call(
        repair_prompt(prompt, schema, first.text, problem),
        schema,
        system=system,
        max_tokens=max_tokens,
        temperature=min(temperature, 0.3),
        prompt_version=prompt_version,
    )
    second = answer[0]
    combined = _combine(first, second)
    try:
        value = _value(answer, schema)
    except (NoJsonFound, ValidationError) as exc:
        raise InvalidModelOutput(
            f"answer for {schema.__name__} is invalid after one repair attempt:\n{_problem(exc)}",
            provider=provider.name,
            output=second.text,
            spent=combined,
        ) from None
    return StructuredResult(value=value, result=combined, prompt_version=prompt_version, repaired=True)


class StructuredViaText:
    """``generate_structured`` for model backends: ask natively or in text, then validate and repair.

    Mixed into the Anthropic and OpenAI providers, which override ``_structured_ask`` with their
    native structured call where the API has one.
    """

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
        """A plain text answer, whose JSON ``generate_structured`` then extracts."""
        result = self.generate(  # type: ignore[attr-defined]
            prompt,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
            prompt_version=prompt_version,
        )
        return result, NO_STRUCTURED_CONTENT

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
            ask=self._structured_ask,
        )
