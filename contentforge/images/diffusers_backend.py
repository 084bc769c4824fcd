"""SDXL through diffusers: the real model (profile "model") or the random-weight tiny one ("tiny").

Both share one code path, so everything the tests prove on the tiny pipeline (seeded determinism,
LoRA switching, long prompts, thread safety) holds for the real model too. Prompts always go through
compel, which splits prompts longer than CLIP's 77 tokens into chunks instead of truncating them.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from compel import CompelForSDXL
from diffusers import StableDiffusionXLPipeline
from diffusers.utils import deprecation_utils

from contentforge.config import Settings
from contentforge.domain import GenerationRecord, LoraRef, LoraSpec
from contentforge.errors import GenerationFailed, InvalidInput, InvalidLora
from contentforge.images import pool as pools
from contentforge.images.protocol import GeneratedImage, ImageRequest
from contentforge.images.safety import check_model_file, looks_local, lora_file, validate_lora
from contentforge.images.tiny import build_tiny_sdxl_pipeline, tiny_model_id

logger = logging.getLogger(__name__)

# Several persona LoRAs on one pipeline is the design, not an accident peft should warn about.
warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute", category=UserWarning)

DTYPE_KWARG = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
"""diffusers renamed ``torch_dtype`` to ``dtype`` (PR #14205); use the new name where it exists."""
MAX_LOADED_ADAPTERS = 8
"""LoRAs kept loaded per pipeline; beyond this the least recently used idle ones are unloaded."""
AUTO_REPLICAS_CPU = 5
AUTO_REPLICAS_GPU = 1


def resolve_device(setting: str) -> tuple[str, str]:
    """The torch device to use and why: an explicit setting wins, else cuda > mps > cpu."""
    if setting != "auto":
        return setting, f"CONTENTFORGE_IMAGE_DEVICE={setting}"
    if torch.cuda.is_available():
        return "cuda", "auto: CUDA is available"
    if torch.backends.mps.is_available():
        return "mps", "auto: Apple MPS is available"
    return "cpu", "auto: no CUDA or MPS device"


def resolve_dtype(device: str, tiny: bool) -> torch.dtype:
    """Half precision on accelerators (bf16 where supported: no fp16 VAE overflow), fp32 on CPU.

    The tiny pipeline stays fp32 everywhere: random weights overflow easily in fp16 and it costs nothing.
    """
    if tiny or device == "cpu":
        return torch.float32
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class Replica:
    """A per-call pipeline sharing the pool's weights, with its own scheduler, tokenizers and compel."""

    pipe: StableDiffusionXLPipeline
    compel: CompelForSDXL


@dataclass(frozen=True)
class _ResolvedLora:
    name: str
    spec: LoraSpec
    ref: LoraRef


def adapter_name(spec: LoraSpec, sha256: str | None) -> str:
    """A stable adapter name for a LoRA source (and content, so an edited file is reloaded)."""
    key = f"{spec.source}|{spec.weight_name or ''}|{sha256 or ''}"
    return "cf_" + hashlib.sha256(key.encode()).hexdigest()[:16]


class DiffusersBackend:
    """SDXL pipelines shared per process (see ``pool``), safe to call from many threads at once."""

    def __init__(
        self,
        *,
        name: str,
        model_id: str,
        load: Callable[[torch.dtype], StableDiffusionXLPipeline],
        device: str,
        device_reason: str,
        dtype: torch.dtype,
        replicas: int,
        cost_usd: float,
        allow_pickle: bool,
        why: str,
    ) -> None:
        self.name = name
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.replicas = replicas
        self.cost_usd = cost_usd
        self.allow_pickle = allow_pickle
        self._load = load
        self._device_reason = device_reason
        self._why = why
        self.pool_key = pools.PoolKey(model=model_id, dtype=_dtype_name(dtype), device=device)

    @classmethod
    def from_settings(cls, settings: Settings) -> DiffusersBackend:
        """Build the backend for profile "tiny" or "model" without loading any weights yet."""
        device, device_reason = resolve_device(settings.image_device)
        tiny = settings.image_profile == "tiny"
        dtype = resolve_dtype(device, tiny)
        replicas = settings.image_replicas or (
            AUTO_REPLICAS_CPU if tiny or device == "cpu" else AUTO_REPLICAS_GPU
        )
        common: dict[str, Any] = {
            "device": device,
            "device_reason": device_reason,
            "dtype": dtype,
            "replicas": replicas,
            "cost_usd": settings.image_cost_usd,
            "allow_pickle": settings.allow_pickle,
        }
        if tiny:
            return cls(
                name="tiny-sdxl",
                model_id=tiny_model_id(0),
                load=lambda _dtype: build_tiny_sdxl_pipeline(0),
                why="CONTENTFORGE_IMAGE_PROFILE=tiny: random weights in code, no download, noise images",
                **common,
            )
        if settings.image_profile != "model":
            raise InvalidInput(f"image profile {settings.image_profile!r} is not served by diffusers")
        model = settings.image_model
        if not model:
            raise InvalidInput("CONTENTFORGE_IMAGE_MODEL must be set for CONTENTFORGE_IMAGE_PROFILE=model")
        if looks_local(model):
            path = Path(model).expanduser()
            if not path.exists():
                raise InvalidInput(f"CONTENTFORGE_IMAGE_MODEL={model}: no such file or folder")
            if path.is_file():
                check_model_file(path, settings.allow_pickle)
        return cls(
            name="diffusers-sdxl",
            model_id=model,
            load=lambda dtype: load_sdxl(model, dtype, settings.allow_pickle),
            why="CONTENTFORGE_IMAGE_PROFILE=model",
            **common,
        )

    def describe(self) -> str:
        return (
            f"{self.name}: {self.model_id} on {self.device} "
            f"({_dtype_name(self.dtype)}; {self._device_reason}); "
            f"up to {self.replicas} concurrent generation(s) sharing one copy of the weights; {self._why}"
        )

    def warm_up(self) -> None:
        """Load the pipeline now (it is otherwise loaded on the first ``generate``)."""
        self._pool()

    def generate(self, request: ImageRequest) -> GeneratedImage:
        started = time.perf_counter()
        loras = [self._resolve_lora(spec) for spec in request.loras]
        active = [lora for lora in loras if lora.spec.scale != 0]
        adapters = tuple((lora.name, lora.spec.scale) for lora in active)
        pool = self._pool()
        with pool.lease(adapters, lambda: self._switch_adapters(pool, active)) as replica:
            image, scheduler = self._run(replica, request)
        record = GenerationRecord(
            backend=self.name,
            model=self.model_id,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            seed=request.seed,
            steps=request.steps,
            guidance_scale=request.guidance_scale,
            width=request.width,
            height=request.height,
            scheduler=scheduler,
            loras=tuple(lora.ref for lora in loras),
            extra={
                "device": self.device,
                "dtype": _dtype_name(self.dtype),
                "diffusers": diffusers.__version__,
            },
        )
        return GeneratedImage(
            image=image, record=record, seconds=time.perf_counter() - started, cost_usd=self.cost_usd
        )

    # -- internals -------------------------------------------------------------------------------

    def _pool(self) -> pools.PipelinePool[Replica]:
        return pools.get_pool(self.pool_key, self._load_pool)

    def _load_pool(self) -> tuple[StableDiffusionXLPipeline, list[Replica]]:
        started = time.perf_counter()
        base = self._load(self.dtype).to(self.device)
        base.set_progress_bar_config(disable=True)
        freeze(base)
        size = self.replicas
        if size > 1 and base.vae.dtype == torch.float16 and base.vae.config.force_upcast:
            # The pipeline flips the shared VAE to fp32 and back around each decode: not thread-safe.
            logger.warning(
                "fp16 VAE with force_upcast: limiting %s to one generation at a time", self.model_id
            )
            size = 1
        with _quiet_fp32_notice():
            replicas = [self._make_replica(base) for _ in range(size)]
        logger.info("loaded %s in %.1fs (%d replicas)", self.model_id, time.perf_counter() - started, size)
        return base, replicas

    def _make_replica(self, base: StableDiffusionXLPipeline) -> Replica:
        """A pipeline sharing ``base``'s modules; built at load time because ``from_pipe`` calls ``.to()``."""
        pipe = type(base).from_pipe(
            base,
            scheduler=type(base.scheduler).from_config(base.scheduler.config),
            # Fast tokenizers mutate truncation/padding state per call ("Already borrowed" under threads).
            tokenizer=copy.deepcopy(base.tokenizer),
            tokenizer_2=copy.deepcopy(base.tokenizer_2),
            add_watermarker=getattr(base, "watermark", None) is not None,
            **{DTYPE_KWARG: self.dtype},
        )
        pipe.set_progress_bar_config(disable=True)
        for tokenizer in (pipe.tokenizer, pipe.tokenizer_2):
            # compel splits long prompts into 77-token chunks itself, so the tokenizer's "longer than the
            # maximum sequence length" warning would be wrong here; mark it as already shown.
            tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
        return Replica(pipe=pipe, compel=CompelForSDXL(pipe, device=self.device))

    def _resolve_lora(self, spec: LoraSpec) -> _ResolvedLora:
        sha256 = validate_lora(spec, allow_pickle=self.allow_pickle)
        ref = LoraRef(source=spec.source, weight_name=spec.weight_name, scale=spec.scale, sha256=sha256)
        return _ResolvedLora(name=adapter_name(spec, sha256), spec=spec, ref=ref)

    def _switch_adapters(self, pool: pools.PipelinePool[Replica], active: list[_ResolvedLora]) -> None:
        """Make exactly ``active`` the LoRAs in effect; runs while no generation uses the weights."""
        pipe = pool.base
        wanted = {lora.name for lora in active}
        for lora in active:
            if lora.name in pool.loaded_adapters:
                pool.loaded_adapters[lora.name] = pool.loaded_adapters.pop(lora.name)  # mark recently used
            else:
                self._load_adapter(pool, lora)
        idle = [name for name in pool.loaded_adapters if name not in wanted]
        excess = len(pool.loaded_adapters) - MAX_LOADED_ADAPTERS
        if excess > 0 and idle:
            evict = idle[:excess]
            pipe.delete_adapters(evict)
            for name in evict:
                del pool.loaded_adapters[name]
        if not active:
            if pool.loaded_adapters:
                pipe.disable_lora()
            return
        pipe.enable_lora()
        pipe.set_adapters(
            [lora.name for lora in active], adapter_weights=[lora.spec.scale for lora in active]
        )

    def _load_adapter(self, pool: pools.PipelinePool[Replica], lora: _ResolvedLora) -> None:
        spec = lora.spec
        try:
            if looks_local(spec.source):
                path = lora_file(spec)
                pool.base.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=lora.name)
            else:
                pool.base.load_lora_weights(
                    spec.source,
                    weight_name=spec.weight_name,
                    adapter_name=lora.name,
                    local_files_only=bool(os.environ.get("HF_HUB_OFFLINE")),
                )
        except Exception as exc:
            try:
                pool.base.delete_adapters([lora.name])
            except Exception:  # nothing (or only part) was loaded; the original error is what matters
                logger.debug("no partial adapter %s to remove", lora.name)
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise InvalidLora(f"LoRA {spec.source} does not load into {self.model_id}: {reason}") from exc
        pool.loaded_adapters[lora.name] = spec.source

    def _run(self, replica: Replica, request: ImageRequest) -> tuple[Any, str]:
        pipe = replica.pipe
        generator_device = "cpu" if self.device == "mps" else self.device  # MPS generators are unreliable
        with torch.inference_mode():
            if request.negative_prompt or not pipe.config.force_zeros_for_empty_prompt:
                cond = replica.compel(request.prompt, negative_prompt=request.negative_prompt)
                negative, negative_pooled = cond.negative_embeds, cond.negative_pooled_embeds
            else:
                # What SDXL does for an empty negative prompt: zero conditioning, not the encoding of "".
                cond = replica.compel(request.prompt)
                negative, negative_pooled = (
                    torch.zeros_like(cond.embeds),
                    torch.zeros_like(cond.pooled_embeds),
                )
            generator = torch.Generator(device=generator_device).manual_seed(request.seed)
            try:
                output = pipe(
                    prompt_embeds=cond.embeds,
                    pooled_prompt_embeds=cond.pooled_embeds,
                    negative_prompt_embeds=negative,
                    negative_pooled_prompt_embeds=negative_pooled,
                    num_inference_steps=request.steps,
                    guidance_scale=request.guidance_scale,
                    width=request.width,
                    height=request.height,
                    generator=generator,
                    output_type="pil",
                )
            except (RuntimeError, ValueError) as exc:
                reason = (str(exc).splitlines() or [type(exc).__name__])[0]
                raise GenerationFailed(f"{self.model_id} failed on seed {request.seed}: {reason}") from exc
        return output.images[0], type(pipe.scheduler).__name__


def freeze(pipe: StableDiffusionXLPipeline) -> None:
    """Mark every weight as not requiring grad, as loading a LoRA does anyway.

    On CPU, torch picks a different (last-bit different) matmul kernel for weights that require grad,
    even under ``inference_mode``; without this, an image made after a LoRA was loaded and disabled
    would differ slightly from the same image made before.
    """
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False)


class _DropNotice(logging.Filter):
    """Drops diffusers' "modules ... kept in float32: []" notice, which ``from_pipe`` triggers spuriously."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


@contextmanager
def _quiet_fp32_notice() -> Iterator[None]:
    target = logging.getLogger("diffusers.models.modeling_utils")
    notice = _DropNotice()
    target.addFilter(notice)
    try:
        yield
    finally:
        target.removeFilter(notice)


def load_sdxl(model: str, dtype: torch.dtype, allow_pickle: bool) -> StableDiffusionXLPipeline:
    """Load SDXL from a diffusers folder, a single checkpoint file or a hub id (cache only when offline)."""
    kwargs: dict[str, Any] = {DTYPE_KWARG: dtype}
    path = Path(model).expanduser()
    try:
        if path.is_file():
            check_model_file(path, allow_pickle)
            return StableDiffusionXLPipeline.from_single_file(str(path), **kwargs)
        use_safetensors = None if allow_pickle else True
        if path.is_dir():
            return StableDiffusionXLPipeline.from_pretrained(
                str(path), use_safetensors=use_safetensors, **kwargs
            )
        return StableDiffusionXLPipeline.from_pretrained(
            model,
            use_safetensors=use_safetensors,
            local_files_only=bool(os.environ.get("HF_HUB_OFFLINE")),
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise GenerationFailed(f"could not load SDXL model {model}: {reason}") from exc
