"""Load personas from YAML or JSON files and validate them with a message that names the field."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from contentforge.domain import Persona
from contentforge.errors import InvalidInput, InvalidPersona
from contentforge.validation import PERSONA_FILE_MAX_BYTES, read_text_file

SAMPLE_PERSONA_FILE = "persona-mia.yaml"


def persona_from_mapping(data: object, source: str) -> Persona:
    if not isinstance(data, dict):
        raise InvalidPersona(f"{source}: a persona must be a mapping of fields, got {type(data).__name__}")
    try:
        return Persona.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "persona"
        raise InvalidPersona(f"{source}: {field}: {first['msg']}") from exc


def _parse_problem(exc: Exception) -> str:
    """One line: PyYAML's messages span several lines and quote the file."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"{exc.problem}{where}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return " ".join(str(exc).split()) or type(exc).__name__


def load_persona_file(path: Path) -> Persona:
    """Read one persona from a ``.yaml``/``.yml``/``.json`` file (UTF-8, a regular file of at most 64 KiB)."""
    try:
        text = read_text_file(path, what="persona file", max_bytes=PERSONA_FILE_MAX_BYTES)
    except InvalidInput as exc:
        raise InvalidPersona(str(exc)) from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, RecursionError) as exc:  # Recursion: deep nesting
        kind = path.suffix.lstrip(".").upper() or "YAML"
        raise InvalidPersona(f"{path}: not valid {kind}: {_parse_problem(exc)}") from exc
    return persona_from_mapping(data, str(path))


def sample_persona() -> Persona:
    """The persona shipped for the demo."""
    text = resources.files("contentforge.samples").joinpath(SAMPLE_PERSONA_FILE).read_text(encoding="utf-8")
    return persona_from_mapping(yaml.safe_load(text), SAMPLE_PERSONA_FILE)
