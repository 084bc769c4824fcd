"""Image throughput and memory of ContentForge's diffusers backend, as one JSON object on stdout.

    python benchmarks/gpu_images.py --model stabilityai/stable-diffusion-xl-base-1.0 \\
        --width 1024 --height 1024 --steps 30 --images 16 --micro-batch 4 --strategy auto

Without ``--model`` it runs the tiny random-weight pipeline (on CPU in a second), which is how the
script itself is tested; its numbers say nothing about real models. Figures for a real GPU come only
from running this on one: peak VRAM is ``torch.cuda.max_memory_allocated``, peak RSS is this process's.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contentforge.config import Settings
from contentforge.images import pool as pools
from contentforge.images.protocol import ImageRequest


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="hub id, diffusers folder or .safetensors file (default: tiny pipeline)"
    )
    parser.add_argument("--family", default="auto", choices=["auto", "sd15", "sdxl", "flux"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--micro-batch", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from contentforge.images.diffusers_backend import DiffusersBackend

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        image_profile="model" if args.model else "tiny",
        image_model=args.model,
        image_family=args.family if args.model or args.family == "sd15" else "auto",
        image_device=args.device,
        image_memory_strategy=args.strategy,
        image_micro_batch=args.micro_batch,
        image_replicas=1,
    )
    backend = DiffusersBackend.from_settings(settings)
    cuda = backend.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    load_started = time.perf_counter()
    info = backend.load_info()
    load_s = time.perf_counter() - load_started
    requests = [
        ImageRequest(
            prompt=f"portrait photo of a woman in a cafe, variation {i}",
            seed=1000 + i,
            steps=args.steps,
            guidance_scale=args.guidance,
            width=args.width,
            height=args.height,
        )
        for i in range(args.images)
    ]
    backend.generate(requests[0])  # warm-up (kernels, allocator); not timed
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for i in range(0, len(requests), backend.micro_batch):
        backend.generate_many(requests[i : i + backend.micro_batch])
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    result: dict[str, object] = {
        "model": backend.model_id,
        "family": backend.family,
        "device": backend.device,
        "gpu": torch.cuda.get_device_name(backend.device) if cuda else None,
        "dtype": str(backend.dtype).removeprefix("torch."),
        "strategy": info.strategy,
        "strategy_reason": info.strategy_reason,
        "resolution": f"{args.width}x{args.height}",
        "steps": args.steps,
        "images": args.images,
        "micro_batch": backend.micro_batch,
        "load_s": round(load_s, 3),
        "weights_mb": round(info.size_bytes / 2**20, 1),
        "s_per_image": round(seconds / args.images, 4),
        "images_per_s": round(args.images / seconds, 3),
        "peak_vram_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tiny_random_weights": not args.model,
    }
    pools.clear(backend.pool_key)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
