"""Micro-batches of pieces: group pieces that can share one pipeline call, run them, isolate failures.

Pieces whose requests share (LoRA set, size, steps, guidance) are cut into micro-batches of
``CONTENTFORGE_IMAGE_MICRO_BATCH`` images. One micro-batch is one GPU job: it runs as one pipeline call
with one generator per image (so each image equals a single run with its seed) inside ONE slot of the
global ``image-generation`` limit. A slot therefore bounds GPU jobs, not images: the GPU executes the
micro-batch as one unit of work (one UNet forward per step for all its images), and what the limit
protects, the device's memory and time, is taken per job. With 5 slots and micro-batches of 4, at most
5 jobs (20 images) are in flight across all workers.

Each piece of a micro-batch gets the micro-batch's started/finished window, and its share of the wall
time as its ``seconds``. If a micro-batch fails, its pieces are retried one by one in the same slot, so
one bad piece fails alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from contentforge.config import Settings
from contentforge.domain import Persona
from contentforge.images.protocol import GeneratedImage, ImageBackend, ImageRequest

if TYPE_CHECKING:
    from contentforge.batch import TimedImage
    from contentforge.db import PieceRow

logger = logging.getLogger(__name__)


def backend_micro_batch(backend: ImageBackend) -> int:
    """How many images the backend runs per call; 1 for backends without ``generate_many``."""
    if not callable(getattr(backend, "generate_many", None)):
        return 1
    return max(1, int(getattr(backend, "micro_batch", 1)))


def request_group_key(request: ImageRequest) -> tuple[object, ...]:
    """What pieces must share to be generated in one pipeline call (prompt and seed may differ)."""
    loras = tuple((s.source, s.weight_name, s.scale) for s in request.loras)
    return (loras, request.width, request.height, request.steps, request.guidance_scale)


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
    """One micro-batch through ``generate_many``; on failure each request again on its own.

    Returns, per request, the image or the exception that request alone raised.
    """
    generate_many = getattr(backend, "generate_many", None)
    if len(requests) > 1 and callable(generate_many):
        try:
            return list(generate_many(list(requests)))
        except Exception as exc:
            logger.warning(
                "micro-batch of %d (seeds %s) failed (%s: %s); retrying its pieces one by one",
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


def generate_micro_batch(
    pieces: Sequence[PieceRow], personas: dict[str, Persona], backend: ImageBackend, settings: Settings
) -> list[TimedImage | Exception]:
    """Generate pieces sharing a group key as one micro-batch; this is what runs inside one slot."""
    from contentforge.batch import TimedImage, image_request_for

    requests = [image_request_for(piece, personas[piece.persona_id], settings) for piece in pieces]
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    results = generate_requests(backend, requests)
    seconds = time.perf_counter() - clock
    finished_at = datetime.now(UTC)
    share = seconds / max(1, len(pieces))
    return [
        result if isinstance(result, Exception) else TimedImage(result, started_at, finished_at, share)
        for result in results
    ]
