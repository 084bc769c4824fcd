"""Random-weight SDXL-, SD1.5- and Flux-shaped pipelines built entirely in code.

It exercises the exact code path of a real SDXL model (two CLIP text encoders, text-time UNet
conditioning, VAE decode, LoRA adapters, compel prompts) fast enough on a CPU for tests and demos
(timing: docs/benchmarks.md), with nothing to download. Its images are structured noise: it is for
tests, demos and orchestration runs, never for content. Shapes follow diffusers' own
``StableDiffusionXLPipelineFastTests`` dummy components; the VAE has four blocks so its scale factor
is 8 as in real SDXL (and keeps it fast). The Flux one (``build_tiny_flux_pipeline``) follows
``FluxPipelineFastTests``, with a T5 tokenizer that is also built in code, so Flux's CLIP + T5 path
is tested offline too.
"""

from __future__ import annotations

import copy
import string
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

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


def _tiny_vae(seed: int, *, flux: bool = False) -> AutoencoderKL:
    """The tiny VAE all tiny pipelines share (seeded here, so each pipeline's weights stay the same).

    ``flux=True`` gives it Flux's VAE layout: no quant convs, a shift factor, and here one latent channel
    (the tiny transformer packs 2x2 latent patches into its 4 input channels, as diffusers' tests do).
    """
    torch.manual_seed(seed)
    layout: dict[str, Any] = {"latent_channels": 4}
    if flux:
        layout = {
            "latent_channels": 1,
            "use_quant_conv": False,
            "use_post_quant_conv": False,
            "shift_factor": 0.0609,
            "scaling_factor": 1.5035,
        }
    return AutoencoderKL(
        block_out_channels=[8, 16, 32, 32],
        layers_per_block=1,
        norm_num_groups=8,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        sample_size=128,
        **layout,
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


def build_tiny_flux_lora(pipe: FluxPipeline, path: Path, seed: int) -> Path:
    """Write a random, non-zero LoRA for the tiny Flux transformer's attention projections to ``path``.

    As ``build_tiny_lora``, on a copy of the transformer, so ``pipe`` is left untouched. Flux's attention
    projections carry the same names as the UNet's (``LORA_TARGETS``), in both kinds of transformer block.
    """
    transformer = copy.deepcopy(pipe.transformer)
    torch.manual_seed(seed)
    transformer.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGETS, init_lora_weights=False)
    )
    layers = get_peft_model_state_dict(transformer)
    path.parent.mkdir(parents=True, exist_ok=True)
    FluxPipeline.save_lora_weights(
        save_directory=str(path.parent),
        transformer_lora_layers=layers,
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


TINY_FLUX_MODEL_ID = "tiny-flux-random"
T5_PAD, T5_EOS, T5_UNK = "<pad>", "</s>", "<unk>"
T5_MAX_TOKENS = 64
"""The tiny T5 tokenizer's ``model_max_length``: the backend's Flux prompt limit (real Flux: 512)."""
T5_SPACE = "\u2581"
"""SentencePiece's word-start marker (▁), which the Metaspace pre-tokenizer puts before each word."""


def build_tiny_t5_tokenizer(max_tokens: int = T5_MAX_TOKENS) -> T5TokenizerFast:
    """A real T5 (SentencePiece Unigram) tokenizer with a small in-code vocabulary, nothing downloaded.

    Pieces: T5's special tokens at their usual ids (pad 0, eos 1, unk 2), every printable character
    with and without the word-start marker, and all lowercase letter pairs, scored so that pairs win:
    a word costs about half its length in tokens, so long prompts really exceed the limit. Same
    pre-tokenizer, decoder and ``</s>`` post-processor as T5's own tokenizer; it survives
    ``save_pretrained``/``from_pretrained`` (a saved tiny Flux folder loads like a real one).
    """
    printable = [c for c in string.printable if not c.isspace()]
    pieces: list[tuple[str, float]] = [(T5_PAD, 0.0), (T5_EOS, 0.0), (T5_UNK, 0.0), (T5_SPACE, -8.0)]
    pieces += [(T5_SPACE + c, -5.0) for c in printable]
    pieces += [(c, -5.0) for c in printable]
    pieces += [(a + b, -6.0) for a in string.ascii_lowercase for b in string.ascii_lowercase]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement=T5_SPACE, prepend_scheme="always", split=True),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=T5_SPACE, prepend_scheme="always", split=True)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=["$A", T5_EOS], pair=["$A", T5_EOS, "$B", T5_EOS], special_tokens=[(T5_EOS, 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=T5_EOS,
        unk_token=T5_UNK,
        pad_token=T5_PAD,
        extra_ids=0,
        model_max_length=max_tokens,
    )


def build_tiny_flux_pipeline(seed: int = 0) -> FluxPipeline:
    """A random-weight Flux-shaped pipeline: CLIP (pooled) + T5 (sequence) text, an MM-DiT, a Flux VAE.

    Shapes follow diffusers' ``FluxPipelineFastTests.get_dummy_components``; the transformer embeds
    guidance as Flux-dev does (so the guidance setting is exercised), the scheduler shifts its timesteps
    with the image size as Flux-dev's does, and the VAE has the same four blocks as the other tiny
    pipelines (scale factor 8; Flux then packs 2x2 latent patches, so sizes are multiples of 16).
    """
    clip_tokenizer = build_tiny_tokenizer()
    t5_tokenizer = build_tiny_t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=HIDDEN,
        pooled_projection_dim=HIDDEN,
        guidance_embeds=True,
        axes_dims_rope=[4, 4, 8],
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=clip_tokenizer.bos_token_id,
            eos_token_id=clip_tokenizer.eos_token_id,
            pad_token_id=clip_tokenizer.pad_token_id,
            vocab_size=len(clip_tokenizer),
            max_position_embeddings=MAX_TOKENS,
            hidden_size=HIDDEN,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            hidden_act="gelu",
            projection_dim=HIDDEN,
        )
    ).eval()
    torch.manual_seed(seed)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer),
            d_model=HIDDEN,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            pad_token_id=t5_tokenizer.pad_token_id,
            eos_token_id=t5_tokenizer.eos_token_id,
            decoder_start_token_id=t5_tokenizer.pad_token_id,
        )
    ).eval()
    vae = _tiny_vae(seed, flux=True)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_image_seq_len=256,
        max_image_seq_len=4096,
        base_shift=0.5,
        max_shift=1.15,
    )
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae.eval(),
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tokenizer,
        transformer=transformer.eval(),
    )
    pipe.set_progress_bar_config(disable=True)
    for module in (transformer, vae, text_encoder, text_encoder_2):
        module.requires_grad_(False)
    return pipe
