"""The GPU stage: generate and store the images of planned pieces.

Its own flow so it can be deployed to the ``gpu`` work pool (work pools route flow runs, not
tasks). Every generation runs inside a slot of the global concurrency limit ``image-generation``
through the process-wide slot dispatcher (``tasks/dispatch.py``), so at most 5 run at once across
all batches and workers while held slots stay busy.

With micro-batching (``CONTENTFORGE_IMAGE_MICRO_BATCH`` > 1, the default on CUDA), pieces sharing
LoRA set, size, steps and guidance are grouped into micro-batches and each micro-batch is one task and
one slot: a slot is one GPU job, and the GPU runs a micro-batch as one job (one UNet pass per step for
all its images). Each image still equals a single run with its seed.

Run it for the planned pieces of an existing batch:

    python flows/generate_images.py BATCH_ID
"""

from __future__ import annotations

import sys
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from contentforge.batch import image_request_for
from contentforge.images.batching import backend_micro_batch, group_requests
from flows.progress import BatchProgress
from tasks import resources
from tasks.images import discard_queued, generate_image, generate_image_batch, queue_generations
from tasks.planning import load_piece
from tasks.run_hooks import discard_generations


def plan_micro_batches(piece_ids: list[str], size: int) -> list[list[str]]:
    """Piece ids cut into micro-batches of pieces that can share one pipeline call."""
    repo, config = resources.repository(), resources.settings()
    pieces = [load_piece(piece_id) for piece_id in piece_ids]
    personas = {p.persona_id: repo.get_persona(p.persona_id) for p in pieces}
    requests, ids = [], []
    for piece in pieces:
        persona = personas[piece.persona_id]
        if persona is None:  # the task reports it; keep the piece alone
            requests.append(None)
        else:
            requests.append(image_request_for(piece, persona, config))
        ids.append(piece.id)
    alone = [[ids[i]] for i, r in enumerate(requests) if r is None]
    valid = [i for i, r in enumerate(requests) if r is not None]
    groups = group_requests([requests[i] for i in valid], size)  # type: ignore[misc]
    return [[ids[valid[i]] for i in group] for group in groups] + alone


@flow(
    name="generate-images",
    task_runner=ThreadPoolTaskRunner(max_workers=16),
    log_prints=False,
    on_crashed=[discard_generations],
    on_cancellation=[discard_generations],
)
def generate_images(
    batch_id: str, piece_ids: list[str], progress_artifact_id: UUID | None = None, progress_steps: int = 0
) -> dict[str, str]:
    """Generate every listed piece; returns piece id -> 'generated', 'skipped' or 'failed: <error>'.

    A failing piece is recorded as failed with its error and does not fail the batch. Progress goes
    to the given progress artifact, or to this run's own ``batch-<id>-images`` artifact.
    """
    logger = get_run_logger()
    backend = resources.image_backend()
    logger.info("image backend: %s", backend.describe())
    progress = BatchProgress(
        batch_id, progress_steps or len(piece_ids), progress_artifact_id, key_suffix="images"
    )
    groups, micro_batches = plan_generation_groups(piece_ids)
    if micro_batches:
        logger.info("%d pieces in %d micro-batch(es)", len(piece_ids), len(groups))
    # Every generation waits for a slot from now on, not from when its task run starts (tasks/images.py).
    queued = queue_generations(groups, micro_batches=micro_batches)
    try:
        outcome = _run_tasks(batch_id, groups, micro_batches, progress, logger)
    finally:
        discard_queued(queued)
    return outcome


def plan_generation_groups(piece_ids: list[str]) -> tuple[list[list[str]], bool]:
    """The groups of pieces generated together (one per task and slot), and whether they are micro-batches."""
    size = backend_micro_batch(resources.image_backend())
    if size > 1:
        return plan_micro_batches(piece_ids, size), True
    return [[piece_id] for piece_id in piece_ids], False


def queue_ahead(piece_ids: list[str]) -> list[tuple[str, ...]]:
    """Queue the pieces' generations in this process now, exactly as ``generate_images`` will group them.

    The batch flow calls it in local mode before starting the GPU stage subflow, so the slots start
    working while the subflow run is still being created; the subflow's tasks then claim the results.
    """
    groups, micro_batches = plan_generation_groups(piece_ids)
    return queue_generations(groups, micro_batches=micro_batches)


def _run_tasks(
    batch_id: str, groups: list[list[str]], micro_batches: bool, progress: BatchProgress, logger: Any
) -> dict[str, str]:
    """Submit one task per group and record each outcome as it completes."""
    if micro_batches:
        futures = {generate_image_batch.submit(ids, n=len(ids)): ids for ids in groups}
    else:
        futures = {generate_image.submit(ids[0]): ids for ids in groups}
    total = sum(len(ids) for ids in groups)
    outcome: dict[str, str] = {}
    for future in as_completed(list(futures)):
        ids = futures[future]
        try:
            result = future.result()
            if isinstance(result, dict):
                outcome.update(result)
            else:
                outcome[ids[0]] = "generated" if result is not None else "skipped"
        except Exception as exc:  # one failing piece (or micro-batch) never fails the batch
            error = f"{type(exc).__name__}: {exc}"[:2000]
            for piece_id in ids:
                resources.repository().mark_failed(piece_id, error)
                logger.warning("piece %s failed: %s", piece_id, error)
                outcome[piece_id] = f"failed: {error}"
        progress.advance(len(ids), note=f"{len(outcome)}/{total} images of batch {batch_id}")
    return outcome


if __name__ == "__main__":
    batch = sys.argv[1]
    ids = [p.id for p in resources.repository().pieces(batch_id=batch)]
    print(generate_images(batch, ids))
