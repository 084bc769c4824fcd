"""Image groups: the pieces one pipeline call generates inside one slot, and how a generation is timed.

Words, as the GPU stage uses them: a *batch* is always a persona's content batch (``contentforge.batch``);
an *image group* is what one slot of the global ``image-generation`` limit runs, and the backend runs
it as one GPU *micro-batch* (``generate_many``). Pieces whose requests share (LoRA set, size, steps,
guidance) are cut into image groups of at most ``CONTENTFORGE_IMAGE_MICRO_BATCH`` images. One image
group is one GPU job: one pipeline call with one generator per image (so each image equals a single
run with its seed) inside ONE slot. A slot therefore bounds GPU jobs, not images: the GPU executes
the group as one unit of work (one UNet forward per step for all its images), and what the limit
protects, the device's memory and time, is taken per job. With 5 slots and groups of 4, at most 5
jobs (20 images) are in flight across all workers.

Each image of a group gets the group's started/finished window, and its share of the wall time as
its ``seconds``. If the group's pipeline call fails, its requests are retried one by one in the same
slot, so one bad piece fails alone.

Nothing here knows pieces or personas (``contentforge.batch`` turns pieces into requests), so the
image package never imports the batch layer above it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from contentforge.images.protocol import GeneratedImage, ImageBackend, ImageRequest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimedImage:
    """A generated image with the wall-clock window in which the generation itself ran.

    ``generation_id`` names this one generation: its charge is keyed by it (charged once however
    often it is recorded), and it travels in the stored record so a crash after storing can adopt
    the stored image instead of generating it again.
    """

    generated: GeneratedImage
    started_at: datetime
    finished_at: datetime
    seconds: float
    generation_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def image_group_size(backend: ImageBackend) -> int:
    """How many images the backend generates per call; 1 for backends without ``generate_many``."""
    if not callable(getattr(backend, "generate_many", None)):
        return 1
    return max(1, int(getattr(backend, "micro_batch", 1)))


def request_group_key(request: ImageRequest) -> tuple[object, ...]:
    """What pieces must share to be generated in one pipeline call (prompt and seed may differ)."""
    loras = tuple((s.source, s.weight_name, s.scale) for s in request.loras)
    return (loras, request.width, request.height, request.steps, request.guidance_scale, request.scheduler)


def group_requests(requests: Sequence[ImageRequest], size: int) -> list[list[int]]:
    """Indexes of ``requests`` grouped by ``request_group_key`` and cut into runs of at most ``size``."""
    step = max(1, size)
    groups: dict[tuple[object, ...], list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(request_group_key(request), []).append(index)
    return [ids[i : i + step] for ids in groups.values() for i in range(0, len(ids), step)]


def generate_requests(
    backend: ImageBackend, requests: Sequence[ImageRequest]
) -> list[GeneratedImage | Exception]:
    """One image group through ``generate_many``; on failure each request again on its own.

    Returns, per request, the image or the exception that request alone raised.
    """
    generate_many = getattr(backend, "generate_many", None)
    if len(requests) > 1 and callable(generate_many):
        try:
            return list(generate_many(list(requests)))
        except Exception as exc:
            logger.warning(
                "image group of %d (seeds %s) failed (%s: %s); retrying its pieces one by one",
                len(requests),
                ", ".join(str(r.seed) for r in requests),
                type(exc).__name__,
                str(exc)[:200],
            )
    results: list[GeneratedImage | Exception] = []
    for request in requests:
        try:
            results.append(backend.generate(request))
        except Exception as exc:
            results.append(exc)
    return results


def generate_timed(backend: ImageBackend, request: ImageRequest) -> TimedImage:
    """One image, timed; its exception propagates (the calling task decides whether to retry)."""
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    generated = backend.generate(request)
    seconds = time.perf_counter() - clock
    return TimedImage(generated, started_at, datetime.now(UTC), seconds)


def generate_timed_group(
    backend: ImageBackend, requests: Sequence[ImageRequest]
) -> list[TimedImage | Exception]:
    """One image group, timed: each image shares the group's window and gets its share of the time."""
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    results = generate_requests(backend, requests)
    seconds = time.perf_counter() - clock
    finished_at = datetime.now(UTC)
    share = seconds / max(1, len(requests))
    return [
        result if isinstance(result, Exception) else TimedImage(result, started_at, finished_at, share)
        for result in results
    ]
