"""A benchmark backend that sleeps instead of generating.

It measures the orchestration (queues, concurrency limits, storage, moderation, database), not any
model: each image takes exactly ``fixed_latency_s`` of wall time and costs no compute, so a benchmark
can show how throughput scales with concurrency slots. Its name says "(benchmark)" everywhere it
appears (records, logs, summaries) so its numbers are never mistaken for model performance.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from contentforge.config import Settings
from contentforge.images.protocol import GeneratedImage, ImageRequest
from contentforge.images.timings import timing_extra

FIXED_LATENCY_NAME = "fixed-latency (benchmark)"


def seeded_image(seed: int, width: int, height: int) -> Image.Image:
    """A deterministic picture from ``seed``: a colour gradient with seeded noise (same seed, same pixels)."""
    rng = np.random.default_rng(seed)
    start, end = rng.integers(0, 256, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, width)[None, :, None]
    gradient = start + (end - start) * ramp
    noise = rng.normal(0.0, 24.0, size=(height, width, 3))
    pixels = np.clip(np.broadcast_to(gradient, (height, width, 3)) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB")


class FixedLatencyBackend:
    """Sleeps ``latency_s`` per image and returns a seed-derived image; thread-safe (no shared state)."""

    name = FIXED_LATENCY_NAME

    def __init__(self, latency_s: float, cost_usd: float = 0.0) -> None:
        self.latency_s = latency_s
        self.cost_usd = cost_usd

    @classmethod
    def from_settings(cls, settings: Settings) -> FixedLatencyBackend:
        return cls(latency_s=settings.fixed_latency_s, cost_usd=settings.image_cost_usd)

    def describe(self) -> str:
        return (
            f"{self.name}: sleeps {self.latency_s:g}s per image and returns seeded noise; measures "
            "orchestration, not a model (CONTENTFORGE_IMAGE_PROFILE=fixed-latency)"
        )

    def generate(self, request: ImageRequest) -> GeneratedImage:
        started = time.perf_counter()
        image = seeded_image(request.seed, request.width, request.height)
        remaining = self.latency_s - (time.perf_counter() - started)
        if remaining > 0:
            time.sleep(remaining)
        record = request.generation_record(
            backend=self.name,
            model="none (benchmark)",
            scheduler=None,
            extra={"latency_s": f"{self.latency_s:g}", "benchmark": "true"},
        )
        return GeneratedImage(
            image=image,
            record=record,
            seconds=time.perf_counter() - started,
            cost_usd=self.cost_usd,
            # Nothing loads and nothing denoises: only the (zero) load time and the cost apply.
            timings=timing_extra(load_s=0.0, cost_usd=self.cost_usd),
        )
