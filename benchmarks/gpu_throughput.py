"""Images per second of a plain diffusers loop and of ContentForge's backend, and peak VRAM per strategy.

    python benchmarks/gpu_throughput.py                  # SDXL architecture, random weights, CUDA
    python benchmarks/gpu_throughput.py --family flux    # FLUX.1-dev architecture (about 34 GB in bf16)
    python benchmarks/gpu_throughput.py --model stabilityai/stable-diffusion-xl-base-1.0   # real weights
    python benchmarks/gpu_throughput.py --dry-run        # build the architecture on "meta", count parameters
    python benchmarks/gpu_throughput.py --tiny           # tiny pipeline, 64x64, 2 steps: runs on a CPU

By default the pipeline has the published architecture with random weights (``architectures.py``), so
nothing is downloaded: a denoising step costs the same whatever the weights. Both sides run the same
pipeline object, prompts, seeds (one generator per image), size, steps and guidance, and the JSON says
how far their pixels differ (0 means the comparison is apples to apples). Timings exclude a warm-up call
per batch size and wait for the GPU (``torch.cuda.synchronize``). Peak VRAM is
``torch.cuda.max_memory_allocated`` during one image at batch 1, reset after loading, per memory strategy.
The targets are for full-size SDXL at 1024x1024, 30 steps, on one H100; figures of ``--tiny`` say
nothing about real throughput. One JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import architectures
from contentforge.images import memory
from contentforge.images import pool as pools
from contentforge.images.protocol import ImageRequest

TARGET_RATIO = 0.95
"""ContentForge's images/s must be at least this share of the plain loop's at the same batch size."""
TARGET_IMAGES = 50
TARGET_SECONDS = 60.0
"""50 images in at most this many seconds at the best batch size."""
TARGET_OFFLOAD_VRAM_GB = 8.0
"""Peak VRAM (1e9 bytes) of model_cpu_offload and the leaner strategies."""
STRATEGIES = ("full_gpu", "model_cpu_offload", "group_offload", "sequential_cpu_offload")
GROUP_OFFLOAD = "enable_group_offload"
"""The pipeline method group offloading needs (not in every diffusers version)."""
WARMUP_STEPS = 2
"""Warm-up calls pick kernels for each batch shape; how many steps they run does not matter."""
GUIDANCE = {"sd15": 7.5, "sdxl": 5.0, "flux": 3.5}
PROMPT = "portrait photo of a woman in a cafe, variation {index}"


@dataclass
class Source:
    """Where the pipeline comes from: a random-weight architecture, the tiny pipeline or a real model."""

    family: str
    weights: str
    """What the weights are, for the JSON."""
    load: Callable[[Any, str], Any]
    """``load(dtype, where)``: a fresh pipeline with its modules on ``where`` ("cpu" or the device)."""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--family", choices=["sdxl", "flux", "sd15"], help="default: sdxl (auto with --model)"
    )
    parser.add_argument("--model", help="real weights: hub id, diffusers folder or .safetensors file")
    parser.add_argument("--tiny", action="store_true", help="tiny random pipeline, small sizes (CPU smoke)")
    parser.add_argument("--dry-run", action="store_true", help="build the architecture on meta and stop")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float16", "bfloat16", "float32"])
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--batch-sizes", help="comma-separated (default 1,2,4,8; tiny 1,2)")
    parser.add_argument("--images", type=int, help="images per batch size and side (default: largest batch)")
    parser.add_argument("--fifty", choices=["measure", "extrapolate"], default="measure")
    parser.add_argument("--memory-steps", type=int, default=4, help="steps of the peak-VRAM runs")
    args = parser.parse_args(list(argv))
    small = args.tiny
    args.width = args.width or (64 if small else 1024)
    args.height = args.height or (64 if small else 1024)
    args.steps = args.steps or (2 if small else 30)
    sizes = args.batch_sizes or ("1,2" if small else "1,2,4,8")
    try:
        args.batch_sizes = sorted({int(size) for size in sizes.split(",")})
    except ValueError:
        parser.error(f"--batch-sizes must be comma-separated integers, got {sizes!r}")
    if args.batch_sizes[0] < 1:
        parser.error("batch sizes must be at least 1")
    args.images = args.images or args.batch_sizes[-1]
    if args.model and (args.tiny or args.dry_run):
        parser.error("--model loads real weights; --tiny and --dry-run build random ones")
    if args.family == "sd15" and not (args.tiny or args.model):
        parser.error("the full-size random architectures are SDXL and Flux; use --model for SD1.5")
    try:  # bad sizes fail here, before any weights are built
        size = {"width": args.width, "height": args.height}
        ImageRequest(prompt="x", seed=0, steps=args.steps, guidance_scale=0, **size)
    except ValueError as exc:
        parser.error(f"invalid size or steps: {exc}")
    return args


def choose_source(args: argparse.Namespace, device: str) -> Source:

    if args.model:
        from contentforge.images.loading import detect_family, load_pipeline

        family, _reason = detect_family(args.model, args.family or "auto")

        def load_model(dtype: Any, where: str) -> Any:
            pipe = load_pipeline(args.model, family, dtype, allow_pickle=False)
            pipe.set_progress_bar_config(disable=True)
            return pipe.to(where)

        return Source(family, args.model, load_model)
    family = args.family or "sdxl"
    if args.tiny:
        return Source(family, f"tiny random {family} (contentforge.images.tiny)", partial(_tiny, family))
    if family == "sdxl":
        build = architectures.build_sdxl_pipeline
        weights = f"random, architecture of {architectures.SDXL_SOURCE}"
    else:
        build = architectures.build_flux_pipeline
        weights = f"random, architecture of {architectures.FLUX_SOURCE}"

    def load_random(dtype: Any, where: str) -> Any:
        # Built where the benchmark runs (fast random init on a GPU), then moved where the caller wants it.
        pipe = build(device, dtype)
        if where != device:
            pipe.to(where)
            _free_cached_memory()
        return pipe

    return Source(family, weights, load_random)


def _tiny(family: str, _dtype: Any, where: str) -> Any:
    """The tiny pipeline, in float32 whatever the run's dtype (as the backend keeps it)."""
    from contentforge.images import tiny

    builders = {
        "sdxl": tiny.build_tiny_sdxl_pipeline,
        "sd15": tiny.build_tiny_sd15_pipeline,
        "flux": tiny.build_tiny_flux_pipeline,
    }
    return builders[family](0).to(where)


def make_requests(args: argparse.Namespace, count: int, steps: int | None = None) -> list[ImageRequest]:
    return [
        ImageRequest(
            prompt=PROMPT.format(index=index),
            seed=1000 + index,
            steps=steps or args.steps,
            guidance_scale=args.guidance,
            width=args.width,
            height=args.height,
        )
        for index in range(count)
    ]


def make_backend(
    source: Source, pipe_or_none: Any, device: str, dtype: Any, strategy: str, micro_batch: int
) -> Any:
    """ContentForge's backend over ``pipe_or_none`` (shared with the plain loop) or a fresh load."""
    from contentforge.images.diffusers_backend import DiffusersBackend

    def load(load_dtype: Any) -> Any:
        if pipe_or_none is not None:
            return pipe_or_none
        # The backend places a CPU pipeline itself; full_gpu may as well arrive on the device already.
        return source.load(load_dtype, device if strategy == "full_gpu" else "cpu")

    return DiffusersBackend(
        name=f"benchmark-{source.family}",
        model_id=f"benchmark:{source.weights}",
        load=load,
        device=device,
        device_reason="benchmark --device",
        dtype=dtype,
        replicas=1,
        cost_usd=0.0,
        allow_pickle=False,
        why="benchmarks/gpu_throughput.py",
        family=source.family,
        family_reason="benchmark",
        strategy=strategy,
        micro_batch=micro_batch,
    )


def run_plain(pipe: Any, requests: list[ImageRequest], batch: int, device: str, family: str) -> list[Any]:
    """What a diffusers user writes: prompts as text, one generator per image, ``batch`` per call."""
    import torch

    from contentforge.images.diffusers_backend import flux_max_sequence

    # Flux's T5 length changes the pixels: pass what ContentForge passes (512 for FLUX.1-dev).
    extra = {"max_sequence_length": flux_max_sequence(pipe)} if family == "flux" else {}
    generator_device = "cpu" if device == "mps" else device
    images: list[Any] = []
    for start in range(0, len(requests), batch):
        chunk = requests[start : start + batch]
        first = chunk[0]
        output = pipe(
            prompt=[r.prompt for r in chunk],
            num_inference_steps=first.steps,
            guidance_scale=first.guidance_scale,
            width=first.width,
            height=first.height,
            generator=[torch.Generator(device=generator_device).manual_seed(r.seed) for r in chunk],
            **extra,
        )
        images.extend(output.images)
    return images


def run_contentforge(backend: Any, requests: list[ImageRequest]) -> list[Any]:
    """Micro-batches of ``backend.micro_batch`` through the public ``generate_many``, as the GPU task does."""
    images: list[Any] = []
    for start in range(0, len(requests), backend.micro_batch):
        images.extend(g.image for g in backend.generate_many(requests[start : start + backend.micro_batch]))
    return images


def timed(device: str, work: Callable[..., list[Any]], *args: Any) -> tuple[list[Any], float]:
    """``work(*args)`` and its wall seconds, with the GPU's queued kernels finished on both sides."""
    _synchronize(device)
    started = time.perf_counter()
    result = work(*args)
    _synchronize(device)
    return result, time.perf_counter() - started


def max_pixel_difference(first: list[Any], second: list[Any]) -> int:
    import numpy as np

    return max(
        int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())
        for a, b in zip(first, second, strict=True)
    )


def measure_throughput(
    args: argparse.Namespace, source: Source, device: str, dtype: Any
) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """Images/s of both sides per batch size, and the 50-image figure at ContentForge's best batch size."""
    strategy = "full_gpu" if device.startswith("cuda") else "auto"
    built = time.perf_counter()
    pipe = source.load(dtype, device)
    build_s = time.perf_counter() - built
    requests = make_requests(args, args.images)
    rows: list[dict[str, Any]] = []
    backends = {}
    for batch in args.batch_sizes:
        backend = backends[batch] = make_backend(source, pipe, device, dtype, strategy, batch)
        warmup = make_requests(args, batch, steps=min(args.steps, WARMUP_STEPS))
        run_plain(pipe, warmup, batch, device, source.family)
        run_contentforge(backend, warmup)
        plain, plain_s = timed(device, run_plain, pipe, requests, batch, device, source.family)
        ours, ours_s = timed(device, run_contentforge, backend, requests)
        rows.append(
            {
                "batch_size": batch,
                "images": len(requests),
                "plain_s": round(plain_s, 3),
                "contentforge_s": round(ours_s, 3),
                "plain_images_per_s": round(len(requests) / plain_s, 4),
                "contentforge_images_per_s": round(len(requests) / ours_s, 4),
                "ratio": round(plain_s / ours_s, 4),
                "max_pixel_difference": max_pixel_difference(plain, ours),
            }
        )
    best = max(rows, key=lambda row: row["contentforge_images_per_s"])
    if args.fifty == "measure":
        fifty = make_requests(args, TARGET_IMAGES)
        _images, seconds = timed(device, run_contentforge, backends[best["batch_size"]], fifty)
        how = "measured: ContentForge backend, 50 images after warm-up"
    else:
        seconds = TARGET_IMAGES / best["contentforge_images_per_s"]
        how = f"extrapolated from ContentForge's images/s over {best['images']} images"
    fifty_images = {"batch_size": best["batch_size"], "seconds": round(seconds, 2), "how": how}
    pools.clear(backends[best["batch_size"]].pool_key)  # one pool: the backends differ in micro_batch only
    return rows, fifty_images, build_s


def measure_memory(args: argparse.Namespace, source: Source, device: str, dtype: Any) -> list[dict[str, Any]]:
    """Peak VRAM of one image at batch 1 for each memory strategy, each on a freshly loaded pipeline."""
    import torch

    from contentforge.images.loading import pipeline_class

    entries = []
    for strategy in STRATEGIES:
        entry: dict[str, Any] = {"strategy": strategy, "steps": args.memory_steps}
        entry |= {"peak_vram_gb": None, "s_per_image": None, "skipped": None}
        if not device.startswith("cuda"):
            entry["skipped"] = "memory strategies need a CUDA device"
        elif strategy == "group_offload" and not hasattr(pipeline_class(source.family), GROUP_OFFLOAD):
            entry["skipped"] = f"this diffusers has no {GROUP_OFFLOAD}"
        if entry["skipped"]:
            entries.append(entry)
            continue
        backend = make_backend(source, None, device, dtype, strategy, 1)
        try:
            backend.warm_up()
            backend.generate(make_requests(args, 1, steps=1)[0])
            _free_cached_memory()
            torch.cuda.reset_peak_memory_stats(device)
            request = make_requests(args, 1, steps=args.memory_steps)[0]
            _images, seconds = timed(device, backend.generate_many, [request])
            entry["peak_vram_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
            entry["s_per_image"] = round(seconds, 3)
        except Exception as exc:  # one failing strategy must not lose the others' figures
            entry["skipped"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        finally:
            pools.clear(backend.pool_key)
            _free_cached_memory()
        entries.append(entry)
    return entries


def judge(rows: list[dict[str, Any]], fifty: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Pass/fail of each target (None when it could not be measured here)."""
    lean = [
        e["peak_vram_gb"] for e in entries if e["strategy"] != "full_gpu" and e["peak_vram_gb"] is not None
    ]
    return {
        "contentforge_at_least_ratio_of_plain": all(row["ratio"] >= TARGET_RATIO for row in rows),
        "fifty_images_in_time": fifty["seconds"] <= TARGET_SECONDS,
        "offload_peak_vram": all(peak <= TARGET_OFFLOAD_VRAM_GB for peak in lean) if lean else None,
    }


def dry_run(args: argparse.Namespace, source_family: str, dtype: Any) -> dict[str, Any]:
    """Build the full-size architecture on the meta device (no memory) and report its size."""
    if source_family == "flux":
        pipe = architectures.build_flux_pipeline("meta", dtype)
        weights = f"random, architecture of {architectures.FLUX_SOURCE}"
    else:
        pipe = architectures.build_sdxl_pipeline("meta", dtype)
        weights = f"random, architecture of {architectures.SDXL_SOURCE}"
    counts = architectures.parameter_counts(pipe)
    return {
        "mode": "dry-run",
        "family": source_family,
        "weights": weights,
        "pipeline": type(pipe).__name__,
        "dtype": _dtype_name(dtype),
        "parameters": counts,
        "total_parameters": sum(counts.values()),
        "weights_gb": round(memory.module_bytes(pipe) / 1e9, 2),
        "would_run": {
            "resolution": f"{args.width}x{args.height}",
            "steps": args.steps,
            "batch_sizes": args.batch_sizes,
            "strategies": list(STRATEGIES),
        },
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import diffusers
    import torch
    import transformers

    from contentforge.images.diffusers_backend import resolve_device, resolve_dtype

    device = "meta" if args.dry_run else resolve_device(args.device)[0]
    if args.dtype != "auto":
        dtype = getattr(torch, args.dtype)
    else:
        dtype = torch.bfloat16 if args.dry_run else resolve_dtype(device, tiny=args.tiny)
    common = {
        "benchmark": "gpu_throughput",
        "command": shlex.join(["python", "benchmarks/gpu_throughput.py", *argv]),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
    if args.dry_run:
        return common | dry_run(args, args.family or "sdxl", dtype)
    if device == "cpu" and not (args.tiny or args.model):
        raise SystemExit(
            "the full-size random architectures need a CUDA (or MPS) device and none was found; "
            "use --tiny for the CPU smoke run or --dry-run to check the architecture"
        )
    source = choose_source(args, device)
    if args.guidance is None:
        args.guidance = GUIDANCE[source.family]
    cuda = device.startswith("cuda")
    rows, fifty, build_s = measure_throughput(args, source, device, dtype)
    _free_cached_memory()  # the throughput pipeline went with measure_throughput's locals
    entries = measure_memory(args, source, device, dtype)
    return common | {
        "mode": "tiny" if args.tiny else "full",
        "family": source.family,
        "weights": source.weights,
        "device": device,
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "dtype": _dtype_name(dtype),
        "resolution": f"{args.width}x{args.height}",
        "steps": args.steps,
        "guidance_scale": args.guidance,
        "load_s": round(build_s, 2),
        "throughput": rows,
        "best_batch_size": fifty["batch_size"],
        "fifty_images": fifty,
        "memory": entries,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": {
            "min_ratio_contentforge_to_plain": TARGET_RATIO,
            "max_seconds_for_50_images": TARGET_SECONDS,
            "max_offload_peak_vram_gb": TARGET_OFFLOAD_VRAM_GB,
            "meaningful_here": bool(cuda and not args.tiny and source.family == "sdxl"),
        },
        "passed": judge(rows, fifty, entries),
    }


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _free_cached_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
