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

A persona uses a registry entry by naming it as its LoRA source, ``lora: {source: "registry:anna"}``
(``resolve_persona_lora``): source, weight name and trigger word come from the registry, and the scale
too unless the persona sets one other than ``LoraSpec``'s default (0.8). A name the YAML registry does
not hold (or no YAML registry at all) is looked up among the LoRAs installed in the database registry
(``contentforge models install``), with the same family and changed-file checks.

A LoRA a client names (through the REST API) is only ever a registry name or a hub id: inside
``client_named_loras()`` (the API's validation context) ``resolve_persona_lora`` decides by the
string's shape alone and never touches the filesystem, so an answer cannot tell whether a server path
exists; anything path-shaped is refused with the same message (``check_client_lora``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from contentforge.config import Settings
from contentforge.db.registry import InstalledModel, ModelRegistry
from contentforge.domain import LoraSpec
from contentforge.errors import InvalidInput, InvalidLora
from contentforge.images.loading import detect_family
from contentforge.images.safety import check_model_file, looks_local, validate_lora

HUB_ID = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*/[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*"
)
"""A Hugging Face repo id ``owner/name``: one slash, no ``..``, nothing that starts like a path."""
_MODEL_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".pkl", ".gguf")
_WEIGHT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
logger = logging.getLogger(__name__)
_CLIENT_NAMED: ContextVar[bool] = ContextVar("contentforge_client_named_loras", default=False)


@contextmanager
def client_named_loras() -> Iterator[None]:
    """Within this block (the API's request validation) LoRA sources are checked by shape only."""
    token = _CLIENT_NAMED.set(True)
    try:
        yield
    finally:
        _CLIENT_NAMED.reset(token)


def check_client_lora(spec: LoraSpec) -> None:
    """Refuse a client-named LoRA that is not ``registry:<name>`` or a hub id, without any file access.

    The message is the same whatever the string names on the server (a file, a folder, nothing).
    """
    if registry_name(spec) is not None:
        return
    source = spec.source
    weight = spec.weight_name
    hub = HUB_ID.fullmatch(source) is not None and not source.lower().endswith(_MODEL_SUFFIXES)
    if not hub or (weight is not None and (_WEIGHT_NAME.fullmatch(weight) is None or ".." in weight)):
        raise InvalidLora(
            f"LoRA {source!r}: through the API a persona LoRA is registry:<name> "
            "(CONTENTFORGE_IMAGE_LORA_REGISTRY) or a Hugging Face hub id owner/name with a plain "
            "weight_name, never a file path; register local files in the LoRA registry"
        )


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


REGISTRY_PREFIX = "registry:"
_DEFAULT_SCALE = LoraSpec.model_fields["scale"].default
_REGISTRIES: dict[tuple[str, int, int], LoraRegistry] = {}
_REGISTRIES_LOCK = threading.Lock()


def registry_name(spec: LoraSpec) -> str | None:
    """The registry entry a LoRA source ``registry:<name>`` names; None for a file or hub id."""
    if not spec.source.startswith(REGISTRY_PREFIX):
        return None
    return spec.source.removeprefix(REGISTRY_PREFIX).strip()


def load_registry(path: Path) -> LoraRegistry:
    """The registry in ``path``, parsed once per change of the file (per piece calls are cheap)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise InvalidInput(f"LoRA registry {path}: {exc.strerror}") from exc
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _REGISTRIES_LOCK:
        cached = _REGISTRIES.get(key)
    if cached is None:
        cached = LoraRegistry.load(path)
        with _REGISTRIES_LOCK:
            _REGISTRIES[key] = cached
    return cached


def resolve_persona_lora(spec: LoraSpec, settings: Settings, family: str | None = None) -> LoraSpec:
    """The LoRA a persona's ``spec`` stands for, checked before any generation.

    ``registry:<name>`` resolves through ``CONTENTFORGE_IMAGE_LORA_REGISTRY`` (an unknown name, a LoRA of
    another family than the configured model's, or a changed file raise ``InvalidLora``); any other
    source is validated and returned as given. ``family`` defaults to the configured backend's (none for
    Replicate and the benchmark backend, whose LoRAs are then not checked against a family).
    """
    name = registry_name(spec)
    if name is None:
        if _CLIENT_NAMED.get():  # the API: decide by shape, never look at the server's filesystem
            check_client_lora(spec)
            return spec
        validate_lora(spec, allow_pickle=settings.allow_pickle)
        return spec
    registry = load_registry(settings.image_lora_registry) if settings.image_lora_registry else None
    if registry is None or name not in registry.entries:
        return _installed_lora(spec, name, settings, family, registry)
    entry = registry.entries.get(name)
    if family is None:
        family = _configured_family(settings) or (entry.base_family if entry else None)
    scale = None if spec.scale == _DEFAULT_SCALE else spec.scale
    specs, _ = registry.resolve(
        [name if scale is None else (name, scale)], family or "", settings.allow_pickle
    )
    resolved = specs[0]
    if resolved.trigger_word is None and spec.trigger_word:
        resolved = resolved.model_copy(update={"trigger_word": spec.trigger_word})
    return resolved


def _installed_lora(
    spec: LoraSpec, name: str, settings: Settings, family: str | None, registry: LoraRegistry | None
) -> LoraSpec:
    """``registry:<name>`` as a LoRA installed in the database registry (``contentforge models install``).

    Checked like a YAML entry: the LoRA's probed family must be the configured model's, and a file that
    changed since it was installed (another SHA-256) is refused before any weights load.
    """
    installed = _installed(settings, name)
    if installed is None or installed.kind != "lora":
        nowhere = "no LoRA of that name is installed (see: contentforge models list)"
        if registry is None:
            raise InvalidLora(
                f"persona LoRA {spec.source!r} names a registry entry, but CONTENTFORGE_IMAGE_LORA_REGISTRY "
                f"is not set and {nowhere}"
            )
        known = ", ".join(sorted(registry.entries)) or "none"
        raise InvalidLora(f"unknown LoRA {name!r} (registered: {known}) and {nowhere}")
    wanted = family or _configured_family(settings) or installed.family
    if installed.family != wanted:
        raise InvalidLora(f"LoRA {name!r} was trained for {installed.family}, but the model is {wanted}")
    default = installed.recommended_weight if installed.recommended_weight is not None else _DEFAULT_SCALE
    resolved = LoraSpec(
        source=installed.path,
        trigger_word=installed.trigger_words[0] if installed.trigger_words else spec.trigger_word,
        scale=default if spec.scale == _DEFAULT_SCALE else spec.scale,
    )
    digest = validate_lora(resolved, allow_pickle=settings.allow_pickle)
    if digest is not None and digest != installed.sha256:
        raise InvalidLora(
            f"LoRA {name!r}: {installed.path} changed since it was installed "
            f"(sha256 {digest[:12]}…, installed {installed.sha256[:12]}…); reinstall it"
        )
    return resolved


def _installed(settings: Settings, name: str) -> InstalledModel | None:
    """The model installed as ``name``; None when there is none, or no database (nothing installed)."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").expanduser().is_file():
        return None  # never create a database just to find it empty
    try:
        return ModelRegistry(_registry_engine(url.render_as_string(hide_password=False))).get(name)
    except (OperationalError, ProgrammingError) as exc:  # a database from before the registry (0008)
        logger.debug("no model registry in the database: %s", exc)
        return None


@lru_cache(maxsize=4)
def _registry_engine(url: str) -> Engine:
    """One engine per database for registry look-ups (the database is migrated by whoever opened it)."""
    from contentforge.db.engine import make_engine

    return make_engine(url)


def _configured_family(settings: Settings) -> str | None:
    """The model family of the configured image backend, learned without building it (nor any weights).

    Decided as ``DiffusersBackend.from_settings`` decides it: the tiny profile is sd15 or flux when
    ``CONTENTFORGE_IMAGE_FAMILY`` says so and sdxl otherwise; a model's family comes from
    ``loading.detect_family`` (the setting, its ``model_index.json`` or a single file's tensor names),
    after the same refusals of a missing or pickled model. Replicate and the fixed-latency benchmark
    backend have none.
    """
    if settings.image_profile == "tiny":
        return settings.image_family if settings.image_family in ("sd15", "flux") else "sdxl"
    if settings.image_profile != "model":
        return None
    return _model_family(
        settings.image_model, settings.image_family, settings.image_single_file_config, settings.allow_pickle
    )


@lru_cache(maxsize=16)
def _model_family(model: str | None, setting: str, single_file_config: str | None, allow_pickle: bool) -> str:
    """The family of ``CONTENTFORGE_IMAGE_MODEL``, once per model setting (a hub id asks the hub once)."""
    if not model:
        raise InvalidInput("CONTENTFORGE_IMAGE_MODEL must be set for CONTENTFORGE_IMAGE_PROFILE=model")
    if looks_local(model):
        path = Path(model).expanduser()
        if not path.exists():
            raise InvalidInput(f"CONTENTFORGE_IMAGE_MODEL={model}: no such file or folder")
        if path.is_file():
            check_model_file(path, allow_pickle)
    return detect_family(model, setting, single_file_config)[0]
