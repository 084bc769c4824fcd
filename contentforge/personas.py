"""Load personas from YAML or JSON files and validate them with a message that names the field."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from contentforge.domain import Persona
from contentforge.errors import InvalidPersona

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


def load_persona_file(path: Path) -> Persona:
    """Read one persona from a ``.yaml``/``.yml``/``.json`` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidPersona(f"{path}: cannot read persona file ({exc.strerror})") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InvalidPersona(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'}: {exc}") from exc
    return persona_from_mapping(data, str(path))


def sample_persona() -> Persona:
    """The persona shipped for the demo."""
    text = resources.files("contentforge.samples").joinpath(SAMPLE_PERSONA_FILE).read_text(encoding="utf-8")
    return persona_from_mapping(yaml.safe_load(text), SAMPLE_PERSONA_FILE)
