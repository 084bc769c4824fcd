"""Full-size SDXL and Flux architectures with random weights, built in code from their published configs.

A throughput benchmark needs the real shapes (the work per step is the same whatever the weights are), not
the real weights, so nothing is downloaded. Each config below is copied from the model's published
``config.json`` / ``scheduler_config.json``; only the keys each class's constructor accepts are kept, and
the source is named above each. Token embeddings keep the real vocabulary size (so parameter counts
match), while the tokenizers are small ones built offline: prompts tokenize into different ids than the
real tokenizers would give, which changes nothing about the cost of a step.

Modules are created directly on the target device in the target dtype (``torch.device`` context and the
default dtype), so building the 3.5 B parameters of SDXL on a GPU takes seconds, and building on
``"meta"`` allocates nothing: ``--dry-run`` and the tests use that to check the architectures.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

SDXL_SOURCE = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_UNET: dict[str, Any] = {  # {SDXL_SOURCE}/unet/config.json
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}
SDXL_VAE: dict[str, Any] = {  # {SDXL_SOURCE}/vae/config.json
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
CLIP_L_TEXT: dict[str, Any] = {  # {SDXL_SOURCE}/text_encoder/config.json (OpenAI CLIP ViT-L/14)
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "vocab_size": 49408,
}
CLIP_BIGG_TEXT: dict[str, Any] = {  # {SDXL_SOURCE}/text_encoder_2/config.json (OpenCLIP ViT-bigG/14)
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "vocab_size": 49408,
}
SDXL_SCHEDULER: dict[str, Any] = {  # {SDXL_SOURCE}/scheduler/scheduler_config.json (EulerDiscreteScheduler)
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}

FLUX_SOURCE = "black-forest-labs/FLUX.1-dev"
FLUX_TRANSFORMER: dict[str, Any] = {  # {FLUX_SOURCE}/transformer/config.json
    "attention_head_dim": 128,
    "axes_dims_rope": [16, 56, 56],
    "guidance_embeds": True,
    "in_channels": 64,
    "joint_attention_dim": 4096,
    "num_attention_heads": 24,
    "num_layers": 19,
    "num_single_layers": 38,
    "patch_size": 1,
    "pooled_projection_dim": 768,
}
FLUX_VAE: dict[str, Any] = {  # {FLUX_SOURCE}/vae/config.json
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 16,
    "latents_mean": None,
    "latents_std": None,
    "layers_per_block": 2,
    "mid_block_add_attention": True,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "use_post_quant_conv": False,
    "use_quant_conv": False,
}
FLUX_CLIP_TEXT = CLIP_L_TEXT  # {FLUX_SOURCE}/text_encoder/config.json: the same CLIP ViT-L/14 text tower
T5_XXL_ENCODER: dict[str, Any] = {  # {FLUX_SOURCE}/text_encoder_2/config.json (google/t5-v1_1-xxl)
    "d_ff": 10240,
    "d_kv": 64,
    "d_model": 4096,
    "dense_act_fn": "gelu_new",
    "feed_forward_proj": "gated-gelu",
    "is_gated_act": True,
    "layer_norm_epsilon": 1e-06,
    "num_heads": 64,
    "num_layers": 24,
    "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False,
    "vocab_size": 32128,
}
FLUX_SCHEDULER: dict[str, Any] = {  # {FLUX_SOURCE}/scheduler/scheduler_config.json (FlowMatchEuler...)
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}
T5_MAX_TOKENS = 512
"""FLUX.1-dev's tokenizer_2 model_max_length (and the backend's FLUX_MAX_SEQUENCE)."""


@contextmanager
def creating_on(device: str | torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Create new tensors on ``device`` in ``dtype``: no CPU copy, no fp32 copy of a half-precision model."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _clip_config(config: dict[str, Any], tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig

    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return CLIPTextConfig(**config, **ids)


def _inference_only(pipe: Any) -> Any:
    """Eval mode, no grads (as ``DiffusersBackend.freeze`` does), no progress bar."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval().requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_sdxl_pipeline(device: str | torch.device, dtype: torch.dtype, seed: int = 0) -> Any:
    """A StableDiffusionXLPipeline with SDXL base 1.0's architecture and random weights."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from contentforge.images.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()  # CLIP BPE, model_max_length 77, vocabulary built in code
    torch.manual_seed(seed)
    with creating_on(device, dtype):
        unet = UNet2DConditionModel(**SDXL_UNET)
        vae = AutoencoderKL(**SDXL_VAE)
        text_encoder = CLIPTextModel(_clip_config(CLIP_L_TEXT, tokenizer))
        text_encoder_2 = CLIPTextModelWithProjection(_clip_config(CLIP_BIGG_TEXT, tokenizer))
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=copy.deepcopy(tokenizer),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
        add_watermarker=False,
    )
    return _inference_only(pipe)


def build_flux_pipeline(device: str | torch.device, dtype: torch.dtype, seed: int = 0) -> Any:
    """A FluxPipeline with FLUX.1-dev's architecture and random weights."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    from contentforge.images.tiny import build_tiny_t5_tokenizer, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer_2 = build_tiny_t5_tokenizer(T5_MAX_TOKENS)  # T5 Unigram, small vocabulary built in code
    t5_ids = {"pad_token_id": tokenizer_2.pad_token_id, "eos_token_id": tokenizer_2.eos_token_id}
    torch.manual_seed(seed)
    with creating_on(device, dtype):
        transformer = FluxTransformer2DModel(**FLUX_TRANSFORMER)
        vae = AutoencoderKL(**FLUX_VAE)
        text_encoder = CLIPTextModel(_clip_config(FLUX_CLIP_TEXT, tokenizer))
        text_encoder_2 = T5EncoderModel(T5Config(**T5_XXL_ENCODER, **t5_ids))
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    return _inference_only(pipe)


def parameter_counts(pipe: Any) -> dict[str, int]:
    """Parameters per model component (works on the meta device: it only reads shapes)."""
    return {
        name: sum(p.numel() for p in component.parameters())
        for name, component in pipe.components.items()
        if isinstance(component, torch.nn.Module)
    }
