"""The model family (sd15, sdxl, flux) read from a file's tensor names, never from a hub's label.

A hub's "base model" field is typed by whoever uploaded the file; the tensors are what the pipeline
will load. Rules, from the layouts diffusers and kohya write:

- Flux: a ``transformer`` with ``single_transformer_blocks``/``double_blocks`` (LoRA keys start with
  ``transformer.`` or ``lora_unet_double_blocks``/``lora_unet_single_blocks``).
- SDXL: a second text encoder (``text_encoder_2``, ``lora_te2_``, ``conditioner.embedders.1``), a UNet
  with ``add_embedding`` (size/crop conditioning), or attention blocks with more than one transformer
  layer (``transformer_blocks.1``; SD1.5 has exactly one per block).
- SD1.5: a UNet with none of those.

Only safetensors headers are read (``safe_open`` lists keys without loading tensors).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from safetensors import safe_open

from contentforge.errors import InvalidInput
from contentforge.images.loading import ModelFamily, family_of_index, family_of_single_file

_SECOND_LAYER = re.compile(r"transformer_blocks[._]([1-9]\d*)[._]")


def tensor_keys(path: Path) -> list[str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return list(handle.keys())
    except Exception as exc:  # safetensors raises several error types for a bad header
        raise InvalidInput(f"{path.name}: not a readable safetensors file: {str(exc)[:200]}") from exc


def family_of_lora_keys(keys: list[str]) -> ModelFamily | None:
    if any(
        k.startswith("transformer.") or "single_transformer_blocks" in k or "double_blocks" in k for k in keys
    ):
        return "flux"
    if any("text_encoder_2" in k or k.startswith("lora_te2_") for k in keys):
        return "sdxl"
    unet = [k for k in keys if k.startswith(("unet.", "lora_unet_"))]
    if not unet:
        return None
    if any(_SECOND_LAYER.search(k) for k in unet):
        return "sdxl"
    return "sd15"


def probe_lora(path: Path) -> ModelFamily:
    family = family_of_lora_keys(tensor_keys(path))
    if family is None:
        raise InvalidInput(f"{path.name}: no UNet or transformer LoRA layers, so not an SD1.5/SDXL/Flux LoRA")
    return family


def probe_checkpoint(path: Path) -> tuple[ModelFamily, str]:
    """The family of a single-file checkpoint or a diffusers folder, and how it was told."""
    if path.is_file():
        family = family_of_single_file(path)
        if family is None:
            raise InvalidInput(f"{path.name}: cannot tell SD1.5, SDXL or Flux from its tensor names")
        return family, "tensor names of the checkpoint"
    transformer = sorted((path / "transformer").glob("*.safetensors"))
    if transformer and any("single_transformer_blocks" in k for k in tensor_keys(transformer[0])):
        return "flux", "single_transformer_blocks in transformer/"
    unet = sorted((path / "unet").glob("*.safetensors"))
    if not unet:
        raise InvalidInput(f"{path}: neither unet/ nor transformer/ weights in safetensors")
    keys = tensor_keys(unet[0])
    probed: ModelFamily = "sdxl" if any(k.startswith("add_embedding.") for k in keys) else "sd15"
    declared_file = path / "model_index.json"
    if declared_file.is_file():
        declared = family_of_index(json.loads(declared_file.read_text()), str(declared_file))
        if declared != probed:
            raise InvalidInput(
                f"{path}: model_index.json says {declared} but the UNet's tensors are {probed}; not installed"
            )
    reason = (
        "add_embedding in unet/ (SDXL size conditioning)"
        if probed == "sdxl"
        else "unet/ without add_embedding"
    )
    return probed, reason
