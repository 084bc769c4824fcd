"""Write a diffusers SD1.5 pipeline's weights in the original Stable Diffusion (LDM/CompVis) layout.

Test helper only: it lets the single-file test build a real original-layout ``.safetensors`` checkpoint from
the tiny random-weight pipeline, offline, so ``from_single_file``'s conversion back to diffusers is tested
for real rather than monkeypatched.

The key mapping is ported from diffusers' ``scripts/convert_diffusers_to_original_stable_diffusion.py``
(huggingface/diffusers, Apache License 2.0). That script hard-codes SD1.5's block counts (four down blocks,
two resnets each, three per up block); here every loop is derived from the model's own config
(``len(block_out_channels)``, ``layers_per_block``, which blocks have cross-attention), so the same code
maps the tiny UNet and VAE as well as real-sized ones. The VAE attention names follow current diffusers
(``to_q``/``to_out.0``) rather than the script's old ``query``/``proj_attn``.
"""

from __future__ import annotations

from typing import Any

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

UNET_TOP_LEVEL = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
UNET_RESNET_PARTS = {
    "norm1.": "in_layers.0.",
    "conv1.": "in_layers.2.",
    "norm2.": "out_layers.0.",
    "conv2.": "out_layers.3.",
    "time_emb_proj.": "emb_layers.1.",
    "conv_shortcut.": "skip_connection.",
}
VAE_ATTENTION_PARTS = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}


def _rename(key: str, prefixes: dict[str, str]) -> tuple[str, str] | None:
    """The (diffusers prefix, original prefix) pair that ``key`` starts with, longest first; None if none."""
    for diffusers_prefix in sorted(prefixes, key=len, reverse=True):
        if key.startswith(diffusers_prefix):
            return diffusers_prefix, prefixes[diffusers_prefix]
    return None


def _unet_prefixes(config: Any) -> tuple[dict[str, str], set[str]]:
    """Diffusers block prefix -> LDM block prefix for this UNet's shape, and which of them are resnets.

    LDM numbers ``input_blocks`` consecutively: block 0 is ``conv_in``, then each down block contributes
    ``layers_per_block`` (resnet, attention) slots and, except the last, one downsampler slot. Each up block
    contributes ``layers_per_block + 1`` slots in ``output_blocks``; its upsampler sits after the attention
    when the block has one (``.2``), else right after the resnet (``.1``).
    """
    blocks = len(config.block_out_channels)
    per_block = config.layers_per_block
    prefixes: dict[str, str] = {}
    resnets: set[str] = set()
    for i in range(blocks):
        down_has_attention = "CrossAttn" in config.down_block_types[i]
        for j in range(per_block):
            slot = (per_block + 1) * i + j + 1
            prefixes[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{slot}.0."
            resnets.add(f"down_blocks.{i}.resnets.{j}.")
            if down_has_attention:
                prefixes[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{slot}.1."
        if i < blocks - 1:
            prefixes[f"down_blocks.{i}.downsamplers.0.conv."] = (
                f"input_blocks.{(per_block + 1) * (i + 1)}.0.op."
            )
        up_has_attention = "CrossAttn" in config.up_block_types[i]
        for j in range(per_block + 1):
            slot = (per_block + 1) * i + j
            prefixes[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{slot}.0."
            resnets.add(f"up_blocks.{i}.resnets.{j}.")
            if up_has_attention:
                prefixes[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{slot}.1."
        if i < blocks - 1:
            last_slot = (per_block + 1) * i + per_block
            prefixes[f"up_blocks.{i}.upsamplers.0."] = (
                f"output_blocks.{last_slot}.{2 if up_has_attention else 1}."
            )
    prefixes["mid_block.attentions.0."] = "middle_block.1."
    for j in range(2):
        prefixes[f"mid_block.resnets.{j}."] = f"middle_block.{2 * j}."
        resnets.add(f"mid_block.resnets.{j}.")
    return prefixes | UNET_TOP_LEVEL, resnets


def unet_to_original(state_dict: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """A diffusers ``UNet2DConditionModel`` state dict under LDM names (no ``model.diffusion_model.``)."""
    prefixes, resnets = _unet_prefixes(config)
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        match = _rename(key, prefixes)
        if match is None:
            raise KeyError(f"UNet weight {key!r} has no original-layout name for this config")
        diffusers_prefix, original_prefix = match
        rest = key[len(diffusers_prefix) :]
        if diffusers_prefix in resnets:
            part = _rename(rest, UNET_RESNET_PARTS)
            if part is None:
                raise KeyError(f"UNet resnet weight {key!r} has no original-layout name")
            rest = part[1] + rest[len(part[0]) :]
        converted[original_prefix + rest] = tensor
    return converted


def _vae_prefixes(config: Any) -> dict[str, str]:
    """Diffusers -> LDM prefixes for this VAE's shape.

    The encoder has ``layers_per_block`` resnets per block, the decoder one more; LDM numbers decoder
    blocks in reverse (diffusers' ``up_blocks.0`` is LDM's ``up.{n-1}``); the last block of each has no
    down/upsampler.
    """
    blocks = len(config.block_out_channels)
    per_block = config.layers_per_block
    prefixes: dict[str, str] = {}
    for i in range(blocks):
        for j in range(per_block):
            prefixes[f"encoder.down_blocks.{i}.resnets.{j}."] = f"encoder.down.{i}.block.{j}."
        for j in range(per_block + 1):
            prefixes[f"decoder.up_blocks.{i}.resnets.{j}."] = f"decoder.up.{blocks - 1 - i}.block.{j}."
        if i < blocks - 1:
            prefixes[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
            prefixes[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{blocks - 1 - i}.upsample."
    for coder in ("encoder", "decoder"):
        for j in range(2):
            prefixes[f"{coder}.mid_block.resnets.{j}."] = f"{coder}.mid.block_{j + 1}."
        prefixes[f"{coder}.mid_block.attentions.0."] = f"{coder}.mid.attn_1."
        prefixes[f"{coder}.conv_norm_out."] = f"{coder}.norm_out."
        prefixes[f"{coder}.conv_in."] = f"{coder}.conv_in."
        prefixes[f"{coder}.conv_out."] = f"{coder}.conv_out."
    prefixes["quant_conv."] = "quant_conv."
    prefixes["post_quant_conv."] = "post_quant_conv."
    return prefixes


def vae_to_original(state_dict: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKL`` state dict under LDM names (without ``first_stage_model.``).

    LDM's mid-block attention uses 1x1 convolutions where diffusers uses linear layers, so those weights
    get two trailing unit dimensions.
    """
    prefixes = _vae_prefixes(config)
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        match = _rename(key, prefixes)
        if match is None:
            raise KeyError(f"VAE weight {key!r} has no original-layout name for this config")
        diffusers_prefix, original_prefix = match
        rest = key[len(diffusers_prefix) :]
        if ".mid_block.attentions." in diffusers_prefix:
            part = _rename(rest, VAE_ATTENTION_PARTS)
            if part is None:
                raise KeyError(f"VAE attention weight {key!r} has no original-layout name")
            rest = part[1] + rest[len(part[0]) :]
            if rest.endswith("weight") and tensor.ndim == 2:
                tensor = tensor.reshape(*tensor.shape, 1, 1)
        else:
            rest = rest.replace("conv_shortcut.", "nin_shortcut.")
        converted[original_prefix + rest] = tensor
    return converted


def clip_to_original(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ``CLIPTextModel`` state dict as SD1.5 stores it (``cond_stage_model.transformer.``).

    SD1.5 checkpoints hold the HF CLIP names with a ``text_model.`` level; transformers >= 5.6 dropped that
    level from ``CLIPTextModel``'s own state dict, so it is put back when missing.
    """
    return {
        CLIP_PREFIX + (key if key.startswith("text_model.") else f"text_model.{key}"): tensor
        for key, tensor in state_dict.items()
    }


def sd15_pipeline_to_original(pipe: Any) -> dict[str, torch.Tensor]:
    """One original-layout SD1.5 checkpoint (UNet, VAE, CLIP text encoder) from a diffusers pipeline."""
    unet = unet_to_original(pipe.unet.state_dict(), pipe.unet.config)
    vae = vae_to_original(pipe.vae.state_dict(), pipe.vae.config)
    checkpoint = {UNET_PREFIX + k: v for k, v in unet.items()}
    checkpoint |= {VAE_PREFIX + k: v for k, v in vae.items()}
    checkpoint |= clip_to_original(pipe.text_encoder.state_dict())
    return {key: tensor.detach().clone().contiguous() for key, tensor in checkpoint.items()}
