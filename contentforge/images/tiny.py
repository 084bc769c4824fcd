"""A random-weight, SDXL-shaped pipeline built entirely in code.

It exercises the exact code path of a real SDXL model (two CLIP text encoders, text-time UNet
conditioning, VAE decode, LoRA adapters, compel prompts) in ~0.1 s per 128x128 image on a CPU, with
nothing to download. Its images are structured noise: it is for tests, demos and orchestration runs,
never for content. Shapes follow diffusers' own ``StableDiffusionXLPipelineFastTests`` dummy
components; the VAE has four blocks so its scale factor is 8 as in real SDXL (and keeps it fast).
"""

from __future__ import annotations

import copy
import string
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

TINY_MODEL_ID = "tiny-sdxl-random"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_TOKENS = 77
HIDDEN = 32
"""Width of each text encoder; the UNet's cross-attention sees both concatenated (2 * HIDDEN)."""
TIME_EMBED = 8
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def tiny_model_id(seed: int) -> str:
    """The model name recorded for images of the tiny pipeline built with ``seed``."""
    return f"{TINY_MODEL_ID}:seed={seed}"


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes that CLIP's byte-level BPE uses (GPT-2's table)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for byte in range(256):
        if byte not in chars:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def build_tiny_tokenizer() -> CLIPTokenizer:
    """A real CLIP BPE tokenizer with a small in-code vocabulary: bytes plus all lowercase letter pairs.

    Letter-pair merges make words cost about half their length in tokens, close enough to real CLIP
    for the 77-token chunking that long prompts go through.
    """
    alphabet = _byte_alphabet()
    vocab: dict[str, int] = {}
    for token in [*alphabet, *(c + "</w>" for c in alphabet)]:
        vocab[token] = len(vocab)
    merges: list[tuple[str, str]] = []
    for first in string.ascii_lowercase:
        for second in string.ascii_lowercase:
            for suffix in ("", "</w>"):
                merges.append((first, second + suffix))
                vocab[first + second + suffix] = len(vocab)
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
        model_max_length=MAX_TOKENS,
    )


def _tiny_vae(seed: int) -> AutoencoderKL:
    """The tiny VAE both tiny pipelines share (seeded here, so each pipeline's weights stay the same)."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=[8, 16, 32, 32],
        layers_per_block=1,
        norm_num_groups=8,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        sample_size=128,
    )


def build_tiny_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """Build the random-weight SDXL pipeline; the same ``seed`` always gives the same weights."""
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(2, 4),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * TIME_EMBED + HIDDEN,  # six size/crop ids + pooled text
        cross_attention_dim=2 * HIDDEN,
        norm_num_groups=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    vae = _tiny_vae(seed)
    torch.manual_seed(seed)
    text_config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        vocab_size=len(tokenizer),
        max_position_embeddings=MAX_TOKENS,
        hidden_size=HIDDEN,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        hidden_act="gelu",
        projection_dim=HIDDEN,
    )
    text_encoder = CLIPTextModel(text_config).eval()
    text_encoder_2 = CLIPTextModelWithProjection(text_config).eval()
    pipe = StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=copy.deepcopy(tokenizer),
        unet=unet.eval(),
        scheduler=scheduler,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    for module in (unet, vae, text_encoder, text_encoder_2):
        # Inference only; keeps CPU matmul kernels the same after a LoRA load (diffusers_backend.freeze).
        module.requires_grad_(False)
    return pipe


def build_tiny_lora(pipe: StableDiffusionXLPipeline, path: Path, seed: int) -> Path:
    """Write a random, non-zero LoRA for the tiny UNet's attention projections to ``path``.

    The adapter is trained on a copy of the UNet, so ``pipe`` is left untouched. ``init_lora_weights=False``
    makes both LoRA matrices random: peft's default zero-initialises B, which would change nothing.
    """
    unet = copy.deepcopy(pipe.unet)
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGETS, init_lora_weights=False))
    layers = get_peft_model_state_dict(unet)
    path.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionXLPipeline.save_lora_weights(
        save_directory=str(path.parent),
        unet_lora_layers=layers,
        weight_name=path.name,
        safe_serialization=True,
    )
    return path


TINY_SD15_MODEL_ID = "tiny-sd15-random"


def build_tiny_sd15_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """A random-weight SD1.5-shaped pipeline (one CLIP encoder, no pooled/time conditioning).

    Shapes follow diffusers' ``StableDiffusionPipelineFastTests.get_dummy_components``; the VAE is the
    same four-block one as the tiny SDXL, so the latent scale factor is 8 as in real SD1.5.
    """
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=HIDDEN,
        norm_num_groups=2,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
        set_alpha_to_one=False,
    )
    vae = _tiny_vae(seed)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            vocab_size=len(tokenizer),
            max_position_embeddings=MAX_TOKENS,
            hidden_size=HIDDEN,
            intermediate_size=64,
            layer_norm_eps=1e-05,
            num_attention_heads=8,
            num_hidden_layers=3,
        )
    ).eval()
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    return pipe
