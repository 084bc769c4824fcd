"""Where a pipeline's weights live: memory strategies, the pool's memory budget and model sizes.

Strategies, from fastest to leanest (``CONTENTFORGE_IMAGE_MEMORY_STRATEGY``):

- ``full_gpu``: every component on the accelerator. Fastest; needs VRAM for all weights plus activations.
- ``model_cpu_offload``: whole components (text encoders, UNet/transformer, VAE) move to the GPU only
  while they run. Peak VRAM is about the largest component; costs a host-to-device copy per component
  per image (small next to 20-50 denoising steps).
- ``group_offload``: groups of blocks stream to the GPU (with CUDA streams overlapping the copies).
  Below model offload in VRAM, well above sequential offload in speed.
- ``sequential_cpu_offload``: each leaf module is copied to the GPU right before it runs. Lowest VRAM
  (under 3 GB for SDXL), several times slower.
- ``auto``: picks the fastest strategy that fits the detected free VRAM (``choose_strategy``).

Offloading moves weights between host and CUDA memory, so it only exists on CUDA devices. On CPU and
MPS the whole pipeline simply stays on the device; the recorded strategy is then ``on_device``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

from contentforge.errors import InvalidInput

logger = logging.getLogger(__name__)

MemoryStrategy = Literal["auto", "full_gpu", "model_cpu_offload", "sequential_cpu_offload", "group_offload"]
OFFLOAD_STRATEGIES = ("model_cpu_offload", "sequential_cpu_offload", "group_offload")
ON_DEVICE = "on_device"
"""The recorded strategy on CPU/MPS: the whole pipeline on the one device, nothing to offload."""

HEADROOM = 1.25
"""Weights times this must fit: activations, the VAE decode and the CUDA context need the rest."""
LARGEST_COMPONENT_SHARE = 0.6
"""Share of the weights in the largest component (the SDXL UNet is ~74%, Flux's transformer ~70%,
minus what compel and the text encoders release); model offload needs about that much VRAM."""
GROUP_OFFLOAD_SHARE = 0.2
"""Group offload keeps a few blocks resident; about a fifth of the weights in practice."""
CPU_BUDGET_SHARE = 0.5
"""Default pool budget on CPU: half the machine's RAM (the rest is for the OS, Prefect and batches)."""
GPU_BUDGET_SHARE = 0.9


def choose_strategy(requested: str, device: str, model_bytes: int, free_bytes: int | None) -> tuple[str, str]:
    """The strategy to apply and why (pure: no device is touched).

    ``free_bytes`` is the free accelerator memory (``None`` when unknown). An offload strategy asked
    for on a device without CUDA is an error, not a silent fallback: the user asked for a VRAM bound
    that cannot exist there.
    """
    gib = 1024**3
    on_cuda = device.startswith("cuda")
    if requested not in ("auto", "full_gpu", *OFFLOAD_STRATEGIES):
        raise InvalidInput(f"unknown memory strategy {requested!r}")
    if not on_cuda:
        if requested in OFFLOAD_STRATEGIES:
            raise InvalidInput(
                f"CONTENTFORGE_IMAGE_MEMORY_STRATEGY={requested} needs a CUDA device (the pipeline runs on "
                f"{device}, where weights already live in host memory); use auto or full_gpu"
            )
        return ON_DEVICE, f"{device}: the whole pipeline stays on {device} (offloading needs CUDA)"
    if requested != "auto":
        return requested, f"CONTENTFORGE_IMAGE_MEMORY_STRATEGY={requested}"
    size = model_bytes / gib
    if free_bytes is None:
        return "model_cpu_offload", f"auto: free VRAM unknown, model {size:.1f} GiB; offloading per component"
    free = free_bytes / gib
    if free_bytes >= model_bytes * HEADROOM:
        return "full_gpu", f"auto: {free:.1f} GiB free VRAM holds the {size:.1f} GiB model with headroom"
    if free_bytes >= model_bytes * LARGEST_COMPONENT_SHARE * HEADROOM:
        return "model_cpu_offload", (
            f"auto: {free:.1f} GiB free VRAM < {size * HEADROOM:.1f} GiB for the whole model, "
            "but fits its largest component"
        )
    if free_bytes >= model_bytes * GROUP_OFFLOAD_SHARE * HEADROOM:
        return "group_offload", (
            f"auto: {free:.1f} GiB free VRAM is too little for the largest component of the {size:.1f} GiB "
            "model; streaming groups of blocks"
        )
    return "sequential_cpu_offload", (
        f"auto: only {free:.1f} GiB free VRAM for a {size:.1f} GiB model; offloading leaf by leaf (slow)"
    )


def apply_strategy(pipe: Any, strategy: str, device: str) -> None:
    """Put ``pipe`` (loaded on CPU) where ``strategy`` says."""
    import torch

    if strategy in (ON_DEVICE, "full_gpu"):
        pipe.to(device)
    elif strategy == "model_cpu_offload":
        pipe.enable_model_cpu_offload(device=device)
    elif strategy == "sequential_cpu_offload":
        pipe.enable_sequential_cpu_offload(device=device)
    elif strategy == "group_offload":
        pipe.enable_group_offload(
            onload_device=torch.device(device),
            offload_device=torch.device("cpu"),
            offload_type="leaf_level",
            use_stream=True,
        )
    else:
        raise InvalidInput(f"unknown memory strategy {strategy!r}")


def apply_vae_options(pipe: Any, slicing: bool, tiling: bool) -> list[str]:
    """VAE slicing (decode a batch one image at a time) and tiling (decode in overlapping tiles)."""
    done: list[str] = []
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return done
    if slicing:
        vae.enable_slicing()
        done.append("vae_slicing")
    if tiling:
        vae.enable_tiling()
        done.append("vae_tiling")
    return done


def module_bytes(obj: Any) -> int:
    """Bytes of the parameters and buffers of a pipeline (or one module), each tensor counted once."""
    import torch

    modules: list[torch.nn.Module]
    if isinstance(obj, torch.nn.Module):
        modules = [obj]
    elif hasattr(obj, "components"):
        modules = [c for c in obj.components.values() if isinstance(c, torch.nn.Module)]
    else:
        return 0
    seen: set[int] = set()
    total = 0
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            key = id(tensor)
            if key not in seen:
                seen.add(key)
                total += tensor.numel() * tensor.element_size()
    return total


def free_vram_bytes(device: str) -> int | None:
    """Free memory on a CUDA device right now; ``None`` elsewhere."""
    if not device.startswith("cuda"):
        return None
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def default_budget_bytes(device: str) -> tuple[int, str]:
    """The pool's default memory budget and where it came from."""
    if device.startswith("cuda"):
        import torch

        _free, total = torch.cuda.mem_get_info(torch.device(device))
        return int(total * GPU_BUDGET_SHARE), f"{GPU_BUDGET_SHARE:.0%} of {device} memory"
    return int(total_ram_bytes() * CPU_BUDGET_SHARE), f"{CPU_BUDGET_SHARE:.0%} of RAM"


def total_ram_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:  # psutil is optional; sysconf works on Linux and macOS
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def rss_bytes() -> int:
    """Resident set size of this process (for tests and the benchmark)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


QUANTIZATION_BACKENDS = {
    "bnb_4bit": ("bitsandbytes", "bitsandbytes_4bit", {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}),
    "bnb_8bit": ("bitsandbytes", "bitsandbytes_8bit", {"load_in_8bit": True}),
    "torchao_int8": ("torchao", "torchao", {"quant_type": "int8wo"}),
}
QUANTIZED_COMPONENTS = {"sd15": ["unet"], "sdxl": ["unet"], "flux": ["transformer", "text_encoder_2"]}


def quantization_config(setting: str, family: str) -> tuple[Any | None, str]:
    """A ``PipelineQuantizationConfig`` for ``setting``, or None with the reason (logged by the caller)."""
    if setting == "none":
        return None, "no quantization (CONTENTFORGE_IMAGE_QUANTIZATION=none)"
    if setting not in QUANTIZATION_BACKENDS:
        raise InvalidInput(f"unknown quantization {setting!r}; use none, {', '.join(QUANTIZATION_BACKENDS)}")
    package, backend, kwargs = QUANTIZATION_BACKENDS[setting]
    import importlib.util

    if importlib.util.find_spec(package) is None:
        return None, f"quantization {setting} skipped: {package} is not installed (pip install {package})"
    from diffusers import PipelineQuantizationConfig

    components = QUANTIZED_COMPONENTS[family]
    config = PipelineQuantizationConfig(
        quant_backend=backend, quant_kwargs=kwargs, components_to_quantize=components
    )
    return config, f"quantization {setting} of {', '.join(components)} via {package}"
