"""A LoRA registry as data: each named LoRA with its source, trigger word, default scale, base family, sha256.

A YAML or JSON file (``CONTENTFORGE_IMAGE_LORA_REGISTRY``)::

    anna:
      source: /loras/anna.safetensors      # or a hub id, with weight_name
      trigger_word: TOK_anna
      default_scale: 0.8
      base_family: sdxl
      sha256: 3f5c...                      # optional; checked against the file before loading

``resolve`` turns names (with optional scales) into the ``LoraSpec`` list of one generation and refuses a
LoRA trained for another family or whose file changed, before any weights load.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contentforge.domain import LoraSpec
from contentforge.errors import InvalidInput, InvalidLora
from contentforge.images.safety import validate_lora


class LoraEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1)
    weight_name: str | None = None
    trigger_word: str | None = None
    default_scale: float = Field(default=0.8, ge=-4.0, le=4.0)
    base_family: str = Field(pattern="^(sd15|sdxl|flux)$")
    sha256: str | None = Field(default=None, pattern="^[0-9a-f]{64}$")


class LoraRegistry:
    def __init__(self, entries: dict[str, LoraEntry]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, path: Path) -> LoraRegistry:
        try:
            text = path.read_text()
            raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
            if not isinstance(raw, dict):
                raise InvalidInput(f"LoRA registry {path}: expected a mapping of names to LoRAs")
            return cls({str(name): LoraEntry.model_validate(entry) for name, entry in raw.items()})
        except OSError as exc:
            raise InvalidInput(f"LoRA registry {path}: {exc.strerror}") from exc
        except (ValidationError, ValueError, yaml.YAMLError) as exc:
            first = str(exc).splitlines()
            raise InvalidInput(f"LoRA registry {path}: {' '.join(first[:3])[:300]}") from exc

    def resolve(
        self, names: Iterable[str | tuple[str, float]], family: str, allow_pickle: bool = False
    ) -> tuple[list[LoraSpec], list[str]]:
        """LoRA specs (default or given scale) and trigger words for a generation on a ``family`` model."""
        specs: list[LoraSpec] = []
        triggers: list[str] = []
        for item in names:
            name, scale = item if isinstance(item, tuple) else (item, None)
            entry = self.entries.get(name)
            if entry is None:
                known = ", ".join(sorted(self.entries)) or "none"
                raise InvalidLora(f"unknown LoRA {name!r} (registered: {known})")
            if entry.base_family != family:
                raise InvalidLora(
                    f"LoRA {name!r} was trained for {entry.base_family}, but the model is {family}"
                )
            spec = LoraSpec(
                source=entry.source,
                weight_name=entry.weight_name,
                trigger_word=entry.trigger_word,
                scale=entry.default_scale if scale is None else scale,
            )
            digest = validate_lora(spec, allow_pickle=allow_pickle)
            if entry.sha256 and digest and digest != entry.sha256:
                raise InvalidLora(
                    f"LoRA {name!r}: {entry.source} changed "
                    f"(sha256 {digest[:12]}…, registered {entry.sha256[:12]}…)"
                )
            specs.append(spec)
            if entry.trigger_word:
                triggers.append(entry.trigger_word)
        return specs, triggers
