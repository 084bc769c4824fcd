"""Load SD1.5, SDXL or Flux pipelines from a hub id, a diffusers folder or one .safetensors file.

The model family decides the pipeline class. It comes from ``CONTENTFORGE_IMAGE_FAMILY`` when set,
else from the ``_class_name`` in a diffusers folder's (or the hub cache's) ``model_index.json``, else
for a single file from its tensor names (SDXL has a second text encoder under ``conditioner.embedders.1``,
Flux has ``double_blocks``). Every path goes through ``safety.check_model_file``: pickle checkpoints are
refused unless ``CONTENTFORGE_ALLOW_PICKLE=1``, and folders and hub repos load safetensors only.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from contentforge.errors import GenerationFailed, InvalidInput
from contentforge.images.safety import PICKLE_SUFFIXES, check_model_file, looks_local

logger = logging.getLogger(__name__)

ModelFamily = Literal["sd15", "sdxl", "flux"]
FAMILY_BY_CLASS: dict[str, ModelFamily] = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
    "FluxPipeline": "flux",
}
CLASS_BY_FAMILY = {family: name for name, family in FAMILY_BY_CLASS.items()}


def offline() -> bool:
    """Whether the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE=1``): cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def pipeline_class(family: str) -> Any:
    import diffusers

    if family not in CLASS_BY_FAMILY:
        raise InvalidInput(f"unknown model family {family!r}; use sd15, sdxl or flux")
    return getattr(diffusers, CLASS_BY_FAMILY[family])


def family_of_index(index: dict[str, Any], where: str) -> ModelFamily:
    name = str(index.get("_class_name", ""))
    if name not in FAMILY_BY_CLASS:
        raise InvalidInput(
            f"{where}: pipeline class {name or 'missing'!r} is not supported "
            f"(supported: {', '.join(FAMILY_BY_CLASS)}); set CONTENTFORGE_IMAGE_FAMILY to force one"
        )
    return FAMILY_BY_CLASS[name]


def family_of_single_file(path: Path) -> ModelFamily | None:
    """Guess the family of a single safetensors checkpoint from its tensor names (reads the header only)."""
    if path.suffix.lower() != ".safetensors":
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception as exc:
        raise InvalidInput(f"{path}: not a readable safetensors file: {str(exc)[:200]}") from exc
    if any(k.startswith(("double_blocks.", "model.diffusion_model.double_blocks.")) for k in keys):
        return "flux"
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "sd15"
    return None


def detect_family(model: str, setting: str, single_file_config: str | None = None) -> tuple[ModelFamily, str]:
    """The model family and how it was decided."""
    if setting != "auto":
        if setting not in CLASS_BY_FAMILY:
            raise InvalidInput(f"CONTENTFORGE_IMAGE_FAMILY={setting!r}: use auto, sd15, sdxl or flux")
        return setting, f"CONTENTFORGE_IMAGE_FAMILY={setting}"
    path = Path(model).expanduser()
    if looks_local(model):
        if path.is_dir():
            index_file = path / "model_index.json"
            if not index_file.is_file():
                raise InvalidInput(f"{path}: no model_index.json, so not a diffusers pipeline folder")
            family = family_of_index(json.loads(index_file.read_text()), str(index_file))
            return family, f"{index_file.name} names {CLASS_BY_FAMILY[family]}"
        if path.is_file():
            if single_file_config:
                config = Path(single_file_config).expanduser() / "model_index.json"
                if config.is_file():
                    family = family_of_index(json.loads(config.read_text()), str(config))
                    return family, f"config folder {single_file_config} names {CLASS_BY_FAMILY[family]}"
            guessed = family_of_single_file(path)
            if guessed is None:
                raise InvalidInput(
                    f"{path}: cannot tell SD1.5, SDXL or Flux from the file; set CONTENTFORGE_IMAGE_FAMILY"
                )
            return guessed, "tensor names of the single-file checkpoint"
        raise InvalidInput(f"CONTENTFORGE_IMAGE_MODEL={model}: no such file or folder")
    try:
        from huggingface_hub import hf_hub_download

        index_path = hf_hub_download(model, "model_index.json", local_files_only=offline())
    except Exception as exc:
        where = "the local hub cache (HF_HUB_OFFLINE=1)" if offline() else "the hub"
        raise InvalidInput(
            f"{model}: model_index.json not found in {where} ({type(exc).__name__}); "
            "set CONTENTFORGE_IMAGE_FAMILY=sd15|sdxl|flux or download the model first"
        ) from exc
    family = family_of_index(json.loads(Path(index_path).read_text()), f"{model}/model_index.json")
    return family, f"{model}/model_index.json names {CLASS_BY_FAMILY[family]}"


def dtype_kwarg() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype`` (PR #14205); use the new name where it exists."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def load_pipeline(
    model: str,
    family: str,
    dtype: Any,
    *,
    allow_pickle: bool,
    single_file_config: str | None = None,
    quantization: Any | None = None,
) -> Any:
    """Load ``model`` on CPU as the family's pipeline class; a one-line ``GenerationFailed`` if it fails."""
    cls = pipeline_class(family)
    kwargs: dict[str, Any] = {dtype_kwarg(): dtype}
    if family == "sd15":
        # ContentForge moderates every image itself; the SD1.5 safety checker would only cost memory.
        kwargs |= {"safety_checker": None, "requires_safety_checker": False}
    path = Path(model).expanduser()
    local = looks_local(model)
    try:
        if local and path.is_file():
            check_model_file(path, allow_pickle)
            if single_file_config:
                config = Path(single_file_config).expanduser()
                kwargs["config"] = str(config) if config.exists() else single_file_config
            local_config = bool(single_file_config and Path(single_file_config).expanduser().exists())
            kwargs["local_files_only"] = offline() or local_config
            return cls.from_single_file(str(path), **kwargs)
        if quantization is not None:
            kwargs["quantization_config"] = quantization
        use_safetensors = None if allow_pickle else True
        if local:
            if not path.is_dir():
                raise InvalidInput(f"CONTENTFORGE_IMAGE_MODEL={model}: no such file or folder")
            if not allow_pickle:
                pickles = [p.name for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES]
                if pickles and not any(path.rglob("*.safetensors")):
                    check_model_file(path / pickles[0], allow_pickle)
            return cls.from_pretrained(str(path), use_safetensors=use_safetensors, **kwargs)
        return cls.from_pretrained(
            model, use_safetensors=use_safetensors, local_files_only=offline(), **kwargs
        )
    except (OSError, ValueError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise GenerationFailed(f"could not load {cls.__name__} model {model}: {reason}") from exc
