"""SD1.5, SDXL and Flux through diffusers: a real model (profile "model") or a random-weight tiny one.

Both share one code path, so everything the tests prove on the tiny pipelines (seeded determinism,
LoRA switching, long prompts, thread safety, micro-batches equal to single runs) holds for real models.
SD1.5 and SDXL prompts go through compel, which splits prompts longer than CLIP's 77 tokens into chunks
instead of truncating them; Flux prompts go to its T5 encoder as text, up to the model's own limit
(``flux_max_sequence``: 512 tokens, or less where the T5 tokenizer says so), with a warning naming the
piece's seed when a prompt is truncated. Flux has no negative prompt (it is guidance-distilled): one given is
not used, and the record says so.

Micro-batches: ``generate_many`` runs requests that share (LoRA set, size, steps, guidance) as one
pipeline call with one ``torch.Generator`` per image, so item i is the image a single run with its seed
gives (diffusers draws each image's starting noise from its own generator). Requests whose prompt
embeddings have different lengths (a long prompt has more 77-token chunks) run as separate calls,
because padding them to one length would change their pixels.

LoRA fusing (``CONTENTFORGE_IMAGE_LORA_FUSE``): the active LoRA set is merged into the shared weights at
each switch and unmerged before the next, so denoising runs at base-model speed; the weights stay right
to rounding only (see ``Settings.image_lora_fuse``), and fused generations are recorded as such.

Over 500 lines on purpose: one backend whose families share the pipeline pool, LoRA switching, seeding
and micro-batching; per-family encoding is the part that differs and could move out next (STYLE.md's
"one small module per family") when a fourth family arrives.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
from PIL import Image

from contentforge.config import Settings
from contentforge.domain import LoraRef, LoraSpec
from contentforge.errors import GenerationFailed, InvalidInput, InvalidLora
from contentforge.images import memory
from contentforge.images import pool as pools
from contentforge.images.batching import request_group_key
from contentforge.images.cpu_sizing import cpu_sizing
from contentforge.images.loading import detect_family, dtype_kwarg, load_pipeline, offline
from contentforge.images.protocol import GeneratedImage, ImageRequest
from contentforge.images.safety import check_model_file, looks_local, lora_file, validate_lora
from contentforge.images.schedulers import SCHEDULER_CLASSES
from contentforge.images.timings import timing_extra
from contentforge.images.tiny import (
    TINY_FLUX_MODEL_ID,
    TINY_SD15_MODEL_ID,
    build_tiny_flux_pipeline,
    build_tiny_sd15_pipeline,
    build_tiny_sdxl_pipeline,
    tiny_model_id,
)

logger = logging.getLogger(__name__)

# Several persona LoRAs on one pipeline is the design, not an accident peft should warn about.
warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute", category=UserWarning)

DTYPE_KWARG = dtype_kwarg()
"""diffusers renamed ``torch_dtype`` to ``dtype`` (PR #14205); use the new name where it exists."""
MAX_LOADED_ADAPTERS = 8
"""LoRAs kept loaded per pipeline; beyond this the least recently used idle ones are unloaded."""
AUTO_REPLICAS_TINY_GPU = 5
AUTO_REPLICAS_GPU = 1
"""On CPU the replicas (generations at once) and torch threads are sized to the cores: ``cpu_sizing``."""
AUTO_MICRO_BATCH_CPU = 1
"""On CPU a batch of N costs N times one image: batching buys nothing and delays the first result."""
AUTO_MICRO_BATCH_GPU = 4
"""On a GPU one call for 4 images keeps the device busier than 4 calls (measure with benchmarks/)."""
FLUX_MAX_SEQUENCE = 512
"""The longest T5 prompt FluxPipeline accepts (``max_sequence_length``); Flux-dev was trained with it."""
LONG_SEQUENCE_NOTICE = "sequence-length-is-longer-than-the-specified-maximum"
"""Key of a tokenizer's once-only "longer than the maximum" warning; set to True to mark it as shown."""


_TINY_PIPELINES: dict[str, tuple[str, Callable[[int], Any]]] = {
    "sd15": (f"{TINY_SD15_MODEL_ID}:seed=0", build_tiny_sd15_pipeline),
    "sdxl": (tiny_model_id(0), build_tiny_sdxl_pipeline),
    "flux": (f"{TINY_FLUX_MODEL_ID}:seed=0", build_tiny_flux_pipeline),
}
"""The tiny profile's random-weight pipeline per family: (model id recorded on pieces, builder by seed)."""


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

    pipe: Any
    compel: Any | None
    """CompelForSD / CompelForSDXL; None for Flux, whose prompts go to T5 as text."""


@dataclass
class LoadInfo:
    """How a pool's pipeline was placed: recorded on every generation made with it."""

    strategy: str
    strategy_reason: str
    load_seconds: float
    size_bytes: int
    options: list[str] = field(default_factory=list)
    fused: tuple[tuple[str, float], ...] = ()
    """Adapters (name, scale) fused into the shared weights now; changed only under the adapter gate."""


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
    """Pipelines shared per process (see ``pool``), safe to call from many threads at once."""

    def __init__(
        self,
        *,
        name: str,
        model_id: str,
        load: Callable[[torch.dtype], Any],
        device: str,
        device_reason: str,
        dtype: torch.dtype,
        replicas: int,
        cost_usd: float,
        allow_pickle: bool,
        why: str,
        family: str = "sdxl",
        family_reason: str = "",
        strategy: str = "auto",
        budget_bytes: int | None = None,
        budget_reason: str = "",
        micro_batch: int = 1,
        vae_slicing: bool = False,
        vae_tiling: bool = False,
        lora_fuse: bool = False,
        cpu_threads: int | None = None,
        sizing_reason: str = "",
    ) -> None:
        self.name = name
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.replicas = replicas
        self.cost_usd = cost_usd
        self.allow_pickle = allow_pickle
        self.family = family
        self.strategy = strategy
        self.budget_bytes = budget_bytes
        self.micro_batch = max(1, micro_batch)
        self.vae_slicing = vae_slicing
        self.vae_tiling = vae_tiling
        self.lora_fuse = lora_fuse
        self.cpu_threads = cpu_threads
        """torch threads set when the pipeline loads on CPU (process-wide); None leaves torch's own."""
        self._sizing_reason = sizing_reason
        self._load = load
        self._device_reason = device_reason
        self._family_reason = family_reason
        self._budget_reason = budget_reason
        self._why = why
        # Refuse an impossible strategy now (e.g. an offload strategy on CPU), before any weights load.
        if strategy != "auto":
            memory.choose_strategy(strategy, device, 0, None)
        self.pool_key = pools.PoolKey(
            model=model_id, dtype=_dtype_name(dtype), device=device, strategy=strategy
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> DiffusersBackend:
        """Build the backend for profile "tiny" or "model" without loading any weights yet."""
        device, device_reason = resolve_device(settings.image_device)
        tiny = settings.image_profile == "tiny"
        dtype = resolve_dtype(device, tiny)
        cpu_threads, sizing_reason = None, ""
        if device == "cpu":
            sizing = cpu_sizing(settings.image_replicas, settings.image_threads)
            replicas, cpu_threads, sizing_reason = sizing.concurrency, sizing.threads, sizing.reason
        else:
            replicas = settings.image_replicas or (AUTO_REPLICAS_TINY_GPU if tiny else AUTO_REPLICAS_GPU)
        if settings.image_memory_budget_mb:
            budget = settings.image_memory_budget_mb * 2**20
            budget_reason = "CONTENTFORGE_IMAGE_MEMORY_BUDGET_MB"
        else:
            budget, budget_reason = memory.default_budget_bytes(device)
        on_gpu = device.startswith("cuda")
        common: dict[str, Any] = {
            "device": device,
            "device_reason": device_reason,
            "dtype": dtype,
            "replicas": replicas,
            "cost_usd": settings.image_cost_usd,
            "allow_pickle": settings.allow_pickle,
            "strategy": settings.image_memory_strategy,
            "budget_bytes": budget,
            "budget_reason": budget_reason,
            "micro_batch": settings.image_micro_batch
            or (AUTO_MICRO_BATCH_GPU if on_gpu else AUTO_MICRO_BATCH_CPU),
            "vae_slicing": settings.image_vae_slicing,
            "vae_tiling": settings.image_vae_tiling,
            "lora_fuse": settings.image_lora_fuse,
            "cpu_threads": cpu_threads,
            "sizing_reason": sizing_reason,
        }
        if tiny:
            family = settings.image_family if settings.image_family in ("sd15", "flux") else "sdxl"
            model_id, build = _TINY_PIPELINES[family]
            return cls(
                name=f"tiny-{family}",
                model_id=model_id,
                load=lambda _dtype: build(0),
                why="CONTENTFORGE_IMAGE_PROFILE=tiny: random weights in code, no download, noise images",
                family=family,
                family_reason=f"CONTENTFORGE_IMAGE_FAMILY={family}" if family != "sdxl" else "tiny profile",
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
        family, family_reason = detect_family(model, settings.image_family, settings.image_single_file_config)
        quant, quant_reason = memory.quantization_config(settings.image_quantization, family)
        if settings.image_quantization != "none":
            (logger.info if quant is not None else logger.warning)("%s: %s", model, quant_reason)
        single_file_config = settings.image_single_file_config

        def load(dtype: torch.dtype) -> Any:
            return load_pipeline(
                model,
                family,
                dtype,
                allow_pickle=settings.allow_pickle,
                single_file_config=single_file_config,
                quantization=quant,
            )

        return cls(
            name=f"diffusers-{family}",
            model_id=model,
            load=load,
            why="CONTENTFORGE_IMAGE_PROFILE=model" + ("; HF_HUB_OFFLINE: cache only" if offline() else ""),
            family=family,
            family_reason=family_reason,
            **common,
        )

    def describe(self) -> str:
        return (
            f"{self.name}: {self.model_id} ({self.family}: {self._family_reason}) on {self.device} "
            f"({_dtype_name(self.dtype)}; {self._device_reason}); memory strategy {self.strategy}, "
            f"pool budget {self.budget_bytes / 2**20 if self.budget_bytes else 0:.0f} MB "
            f"({self._budget_reason}); micro-batches of up to {self.micro_batch}; "
            f"up to {self.replicas} concurrent call(s) sharing one copy of the weights"
            f"{f' ({self._sizing_reason})' if self._sizing_reason else ''}; "
            f"LoRAs {'fused into the weights' if self.lora_fuse else 'as adapters'}; {self._why}"
        )

    @property
    def max_concurrent(self) -> int | None:
        """Generations this process can run at once on CPU (its replicas); None on a GPU (every slot)."""
        return self.replicas if self.device == "cpu" else None

    def warm_up(self) -> None:
        """Load the pipeline now (it is otherwise loaded on the first ``generate``)."""
        self._pool()

    def load_info(self) -> LoadInfo:
        """How the pipeline was placed (loads it if needed)."""
        return self._pool().info  # type: ignore[no-any-return]

    def generate(self, request: ImageRequest) -> GeneratedImage:
        return self.generate_many([request])[0]

    def generate_many(self, requests: Sequence[ImageRequest]) -> list[GeneratedImage]:
        """Generate requests sharing ``request_group_key`` as one micro-batch; results in request order.

        Item i equals ``generate(requests[i])`` (one generator per image). Callers group with
        ``batching.group_requests``; mixed keys are refused rather than silently split.
        """
        if not requests:
            return []
        keys = {request_group_key(r) for r in requests}
        if len(keys) > 1:
            raise InvalidInput(
                "a micro-batch must share LoRA set, size, steps and guidance, and a scheduler "
                "(see batching.group_requests)"
            )
        started = time.perf_counter()
        loras = [self._resolve_lora(spec) for spec in requests[0].loras]
        active = [lora for lora in loras if lora.spec.scale != 0]
        fused = self.lora_fuse and bool(active)
        warm, before = self.pool_key in pools.loaded_keys(), time.perf_counter()
        pool = self._pool()
        # Load time attributable to this call: the pipeline load it ran or waited for, plus LoRA loads.
        load_seconds = [0.0 if warm else time.perf_counter() - before]
        info: LoadInfo = pool.info
        switch = lambda: load_seconds.append(self._switch_adapters(pool, active))  # noqa: E731
        with pool.lease(self._adapter_key(active), switch) as replica:
            arrays, scheduler, phases = self._run_batch(replica, list(requests))
        seconds = time.perf_counter() - started
        extra = {
            "device": self.device,
            "dtype": _dtype_name(self.dtype),
            "diffusers": diffusers.__version__,
            "family": self.family,
            "memory_strategy": info.strategy,
            "memory_strategy_reason": info.strategy_reason,
            "micro_batch": str(len(requests)),
        }
        if info.options:
            extra["memory_options"] = ",".join(info.options)
        if fused:
            extra["lora_fused"] = "true"  # only when fused: unfused records keep their fingerprints
        results = []
        for request, array, (denoise_s, decode_s) in zip(requests, arrays, phases, strict=True):
            notes = dict(extra)
            if self.family == "flux" and request.negative_prompt:
                notes["negative_prompt_used"] = "false"  # Flux has none; the record must not suggest one
            timings = timing_extra(
                load_s=sum(load_seconds) / len(requests),
                denoise_s=denoise_s,
                decode_s=decode_s,
                cost_usd=self.cost_usd,
            )
            record = request.generation_record(
                backend=self.name,
                model=self.model_id,
                scheduler=scheduler,
                loras=tuple(lora.ref for lora in loras),
                extra=notes,
            )
            results.append(
                GeneratedImage(
                    image=to_pil(array),
                    record=record,
                    seconds=seconds,
                    cost_usd=self.cost_usd,
                    timings=timings,
                )
            )
        return results

    def generate_arrays(self, requests: Sequence[ImageRequest]) -> list[np.ndarray]:
        """The decoded float images (HxWx3 in [0, 1]) of one micro-batch, before 8-bit rounding (tests)."""
        loras = [self._resolve_lora(spec) for spec in requests[0].loras]
        active = [lora for lora in loras if lora.spec.scale != 0]
        pool = self._pool()
        with pool.lease(self._adapter_key(active), lambda: self._switch_adapters(pool, active)) as replica:
            arrays, _, _ = self._run_batch(replica, list(requests))
        return arrays

    def unload_lora(self, spec: LoraSpec) -> bool:
        """Remove a LoRA's adapter from the shared weights (waits for running generations); True if loaded."""
        name = self._resolve_lora(spec).name
        pool = self._pool()
        removed: list[str] = []

        def unload() -> None:
            _unfuse(pool)
            if name in pool.loaded_adapters:
                pool.base.delete_adapters([name])
                del pool.loaded_adapters[name]
                removed.append(name)
            if pool.loaded_adapters:
                pool.base.disable_lora()

        # A fresh key makes the gate run ``unload`` while nothing generates, and forces the next
        # generation to set its adapters again.
        with pool.gate.hold(("unload", name, object()), unload):
            pass
        return bool(removed)

    def loaded_lora_adapters(self) -> list[str]:
        return list(self._pool().loaded_adapters)

    # -- internals -------------------------------------------------------------------------------

    def _pool(self) -> pools.PipelinePool[Replica]:
        return pools.get_pool(self.pool_key, self._load_pool, self.budget_bytes)

    def _load_pool(self) -> tuple[Any, list[Replica], LoadInfo]:
        started = time.perf_counter()
        if self.cpu_threads is not None:
            torch.set_num_threads(self.cpu_threads)  # process-wide: sized with the replicas (cpu_sizing)
        base = self._load(self.dtype)
        base.set_progress_bar_config(disable=True)
        freeze(base)
        size = memory.module_bytes(base)
        if self.budget_bytes is not None:
            pools.make_room(size, self.budget_bytes, keep=self.pool_key)
        strategy, reason = memory.choose_strategy(
            self.strategy, self.device, size, memory.free_vram_bytes(self.device)
        )
        logger.info("%s: memory strategy %s (%s)", self.model_id, strategy, reason)
        memory.apply_strategy(base, strategy, self.device)
        options = memory.apply_vae_options(base, self.vae_slicing, self.vae_tiling)
        count = self.replicas
        if strategy in memory.OFFLOAD_STRATEGIES:
            count = 1  # offload hooks move shared modules between devices per call: one call at a time
        elif count > 1 and base.vae.dtype == torch.float16 and base.vae.config.force_upcast:
            # The pipeline flips the shared VAE to fp32 and back around each decode: not thread-safe.
            logger.warning(
                "fp16 VAE with force_upcast: limiting %s to one generation at a time", self.model_id
            )
            count = 1
        with _quiet_fp32_notice():
            if strategy in memory.OFFLOAD_STRATEGIES:
                replicas = [Replica(pipe=base, compel=self._make_compel(base))]
            else:
                replicas = [self._make_replica(base) for _ in range(count)]
        seconds = time.perf_counter() - started
        logger.info("loaded %s in %.1fs (%d replicas, %.0f MB)", self.model_id, seconds, count, size / 2**20)
        return base, replicas, LoadInfo(strategy, reason, seconds, size, options)

    def _make_compel(self, pipe: Any) -> Any | None:
        if self.family == "flux":
            # We count T5 tokens untruncated on purpose (to warn per piece); the tokenizer's own
            # "longer than the maximum" notice would only repeat it without saying which piece.
            pipe.tokenizer_2.deprecation_warnings[LONG_SEQUENCE_NOTICE] = True
            return None
        from compel import CompelForSD, CompelForSDXL

        tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if self.family == "sdxl" else [])
        for tokenizer in tokenizers:
            # compel splits long prompts into 77-token chunks itself, so the tokenizer's "longer than the
            # maximum sequence length" warning would be wrong here; mark it as already shown.
            tokenizer.deprecation_warnings[LONG_SEQUENCE_NOTICE] = True
        from contentforge.images.prompt_parsing import share_parses

        wrapper = CompelForSDXL if self.family == "sdxl" else CompelForSD
        return share_parses(wrapper(pipe, device=self.device))  # parsing was most of a tiny image's time

    def _make_replica(self, base: Any) -> Replica:
        """A pipeline sharing ``base``'s modules; built at load time because ``from_pipe`` calls ``.to()``."""
        overrides: dict[str, Any] = {
            "scheduler": type(base.scheduler).from_config(base.scheduler.config),
            DTYPE_KWARG: self.dtype,
        }
        # Fast tokenizers mutate truncation/padding state per call ("Already borrowed" under threads).
        for name in ("tokenizer", "tokenizer_2"):
            if getattr(base, name, None) is not None:
                overrides[name] = copy.deepcopy(getattr(base, name))
        if self.family == "sdxl":
            overrides["add_watermarker"] = getattr(base, "watermark", None) is not None
        if self.family == "sd15":
            overrides["requires_safety_checker"] = False
        pipe = type(base).from_pipe(base, **overrides)
        pipe.set_progress_bar_config(disable=True)
        return Replica(pipe=pipe, compel=self._make_compel(pipe))

    def _resolve_lora(self, spec: LoraSpec) -> _ResolvedLora:
        sha256 = validate_lora(spec, allow_pickle=self.allow_pickle)
        ref = LoraRef(source=spec.source, weight_name=spec.weight_name, scale=spec.scale, sha256=sha256)
        return _ResolvedLora(name=adapter_name(spec, sha256), spec=spec, ref=ref)

    def _switch_adapters(self, pool: pools.PipelinePool[Replica], active: list[_ResolvedLora]) -> float:
        """Make exactly ``active`` the LoRAs in effect; runs while no generation uses the weights.

        Returns the seconds spent loading LoRA files (0 when all were loaded already).
        """
        pipe = pool.base
        began = time.perf_counter()
        _unfuse(pool)  # fused weights hold the previous set; they must be clean before anything changes
        loading = time.perf_counter() - began
        wanted = {lora.name for lora in active}
        for lora in active:
            if lora.name in pool.loaded_adapters:
                pool.loaded_adapters[lora.name] = pool.loaded_adapters.pop(lora.name)  # mark recently used
            else:
                began = time.perf_counter()
                self._load_adapter(pool, lora)
                loading += time.perf_counter() - began
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
            return loading
        pipe.enable_lora()
        names = [lora.name for lora in active]
        pipe.set_adapters(names, adapter_weights=[lora.spec.scale for lora in active])
        if self.lora_fuse:
            began = time.perf_counter()
            # The adapter weights set above are folded in; lora_scale=1.0 adds no second scaling.
            pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
            pool.info.fused = tuple((lora.name, lora.spec.scale) for lora in active)
            loading += time.perf_counter() - began
        return loading

    def _adapter_key(self, active: list[_ResolvedLora]) -> tuple[Any, ...]:
        """The adapter gate's key: the LoRA set, and whether it runs fused.

        Fused and unfused backends can share one pool (same weights); the key keeps one from running on
        the other's weights. Without LoRAs there is nothing to fuse, so both share the plain key.
        """
        adapters = tuple((lora.name, lora.spec.scale) for lora in active)
        return ("fused", adapters) if self.lora_fuse and adapters else adapters

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
                    local_files_only=offline(),
                )
            # diffusers only *warns* when no key of the file matches the model (e.g. an SDXL LoRA on
            # Flux); for us that is a LoRA that does not fit, so fail the piece.
            if not _lora_layers(pool.base, lora.name):
                raise ValueError("none of its layers match this model (wrong base model family?)")
        except Exception as exc:
            try:
                pool.base.delete_adapters([lora.name])
            except Exception:  # nothing (or only part) was loaded; the original error is what matters
                logger.debug("no partial adapter %s to remove", lora.name)
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
            raise InvalidLora(
                f"LoRA {spec.source} does not load into {self.model_id} ({self.family}): {reason}"
            ) from exc
        pool.loaded_adapters[lora.name] = spec.source

    def _encode(self, replica: Replica, request: ImageRequest) -> dict[str, Any]:
        """The pipeline inputs for one request (batch dimension 1), as a single run would pass them."""
        pipe = replica.pipe
        if self.family == "flux":
            limit = flux_max_sequence(pipe)
            count = len(pipe.tokenizer_2(request.prompt, truncation=False).input_ids)
            if count > limit:
                logger.warning(
                    "Flux prompt of seed %d is %d T5 tokens; truncated to the model's limit of %d",
                    request.seed,
                    count,
                    limit,
                )
            if request.negative_prompt:
                logger.debug("Flux has no negative prompt; not using the one of seed %d", request.seed)
            return {"prompt": [request.prompt]}
        compel = replica.compel
        if compel is None:  # _make_compel builds one for every SD1.5 and SDXL replica; Flux returned above
            raise GenerationFailed(f"the {self.family} pipeline has no prompt encoder (compel)")
        if self.family == "sd15":
            cond = compel(request.prompt, negative_prompt=request.negative_prompt)
            return {"prompt_embeds": cond.embeds, "negative_prompt_embeds": cond.negative_embeds}
        if request.negative_prompt or not pipe.config.force_zeros_for_empty_prompt:
            cond = compel(request.prompt, negative_prompt=request.negative_prompt)
            negative, negative_pooled = cond.negative_embeds, cond.negative_pooled_embeds
        else:
            # What SDXL does for an empty negative prompt: zero conditioning, not the encoding of "".
            cond = compel(request.prompt)
            negative, negative_pooled = torch.zeros_like(cond.embeds), torch.zeros_like(cond.pooled_embeds)
        return {
            "prompt_embeds": cond.embeds,
            "pooled_prompt_embeds": cond.pooled_embeds,
            "negative_prompt_embeds": negative,
            "negative_pooled_prompt_embeds": negative_pooled,
        }

    def _run_batch(
        self, replica: Replica, requests: list[ImageRequest]
    ) -> tuple[list[np.ndarray], str, list[tuple[float, float]]]:
        """Decoded images, the scheduler's name and each image's (denoise, decode) seconds.

        Images of one pipeline call share its times equally, as pieces share a micro-batch's seconds.

        The split comes from a step-end callback that only reads the clock (and waits for the device
        on the last step), so the pixels are exactly those of a call without it.
        """
        pipe = replica.pipe
        first = requests[0]
        generator_device = "cpu" if self.device == "mps" else self.device  # MPS generators are unreliable
        arrays: list[np.ndarray | None] = [None] * len(requests)
        phases: list[tuple[float, float]] = [(0.0, 0.0)] * len(requests)
        with torch.inference_mode(), _scheduler_for(pipe, first.scheduler):
            encoded = [self._encode(replica, request) for request in requests]
            # Same embedding shapes run together; padding different lengths would change the pixels.
            runs: dict[tuple[Any, ...], list[int]] = {}
            for index, inputs in enumerate(encoded):
                shape = tuple(tuple(v.shape) for v in inputs.values() if isinstance(v, torch.Tensor))
                runs.setdefault(shape, []).append(index)
            for indexes in runs.values():
                inputs = _stack([encoded[i] for i in indexes])
                generators = [
                    torch.Generator(device=generator_device).manual_seed(requests[i].seed) for i in indexes
                ]
                extra: dict[str, Any] = {}
                if self.family == "flux":
                    extra["max_sequence_length"] = flux_max_sequence(pipe)
                clock = _StepClock(self.device)
                began = time.perf_counter()
                try:
                    output = pipe(
                        **inputs,
                        **extra,
                        num_inference_steps=first.steps,
                        guidance_scale=first.guidance_scale,
                        width=first.width,
                        height=first.height,
                        generator=generators,
                        output_type="np",
                        callback_on_step_end=clock,
                    )
                    _synchronize(self.device)
                except (RuntimeError, ValueError) as exc:
                    reason = (str(exc).splitlines() or [type(exc).__name__])[0]
                    seeds = ", ".join(str(requests[i].seed) for i in indexes)
                    raise GenerationFailed(f"{self.model_id} failed on seed(s) {seeds}: {reason}") from exc
                ended = time.perf_counter()
                denoised = clock.last_step or ended
                for position, index in enumerate(indexes):
                    arrays[index] = np.asarray(output.images[position])
                    phases[index] = ((denoised - began) / len(indexes), (ended - denoised) / len(indexes))
            scheduler = type(pipe.scheduler).__name__
        return [a for a in arrays if a is not None], scheduler, phases


@contextmanager
def _scheduler_for(pipe: Any, name: str | None) -> Iterator[None]:
    """The request's scheduler on this leased replica for one call, its own one back afterwards.

    Why a swap on the replica is safe: a replica serves one call at a time (``pool.lease``), so no other
    request can see it, and the ``finally`` gives the next call the model's scheduler again. The new one
    is built from the model's scheduler config (betas, timestep spacing, Flux's shift), as diffusers'
    documented ``from_config`` swap does; only classes a request may name are looked up.
    """
    if name is None:
        yield
        return
    if name not in SCHEDULER_CLASSES:
        raise InvalidInput(f"scheduler {name!r} is not one this backend runs")
    own = pipe.scheduler
    pipe.scheduler = getattr(diffusers, name).from_config(own.config)
    try:
        yield
    finally:
        pipe.scheduler = own


class _StepClock:
    """A ``callback_on_step_end`` that only notes when the last denoising step ended."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.last_step = 0.0

    def __call__(self, pipe: Any, step: int, _timestep: Any, _kwargs: dict[str, Any]) -> dict[str, Any]:
        if step == getattr(pipe, "num_timesteps", 0) - 1:
            _synchronize(self.device)  # the last step: wait for its kernels so the split is true
        self.last_step = time.perf_counter()
        return {}


def _synchronize(device: str) -> None:
    """Wait for queued kernels so a clock reading means the work is done (CUDA runs asynchronously)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def flux_max_sequence(pipe: Any) -> int:
    """The T5 token limit of a Flux pipeline: 512, or its T5 tokenizer's ``model_max_length`` if smaller.

    Tokenizers saved without a limit report a huge ``model_max_length``; FluxPipeline refuses more than 512.
    """
    declared = getattr(pipe.tokenizer_2, "model_max_length", None) or FLUX_MAX_SEQUENCE
    return int(min(FLUX_MAX_SEQUENCE, declared))


def _unfuse(pool: pools.PipelinePool[Replica]) -> None:
    """Subtract fused LoRAs from the shared weights again (call only while nothing generates)."""
    if pool.info.fused:
        pool.base.unfuse_lora()
        pool.info.fused = ()


def _stack(inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate per-request pipeline inputs along the batch dimension."""
    stacked: dict[str, Any] = {}
    for key, value in inputs[0].items():
        if isinstance(value, torch.Tensor):
            stacked[key] = torch.cat([item[key] for item in inputs])
        else:
            stacked[key] = [entry for item in inputs for entry in item[key]]
    return stacked


def _lora_layers(pipe: Any, adapter: str) -> int:
    """How many modules of the pipeline carry LoRA ``adapter`` (peft names them ``lora_A.<name>``)."""
    suffix = f"lora_A.{adapter}"
    count = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            count += sum(1 for name, _ in component.named_modules() if name.endswith(suffix))
    return count


def to_pil(array: np.ndarray) -> Image.Image:
    """What diffusers' ``output_type="pil"`` does: round to 8 bits."""
    return Image.fromarray((array * 255).round().astype("uint8"))


def freeze(pipe: Any) -> None:
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
