"""The GPU stage: generate and store the images of planned pieces.

Its own flow so it can be deployed to the ``gpu`` work pool (work pools route flow runs, not
tasks). Every generation runs inside a slot of the global concurrency limit ``image-generation``
through the process-wide slot dispatcher (``tasks/dispatch.py``), so at most 5 run at once across
all batches and workers while held slots stay busy.

The stage, top to bottom: plan the image groups (one per slot); queue every group's generation
(``GenerationQueue``, ``tasks/generation_queue.py``, which draws the sequence); submit one task per
group (``tasks/images.py``), each claiming its queued generation and storing the images; record each
piece's ``PieceOutcome`` as its task completes; discard whatever no task claimed. Once its run (or its
batch's run in this process) is Cancelling, the batch is stopped: nothing of it starts any more, its
unstarted pieces stay planned until the run ends (then `cancelled`, planned again by a resume), and
the stage ends with ``BatchStopped``.

With GPU micro-batches (``CONTENTFORGE_IMAGE_MICRO_BATCH`` > 1, the default on CUDA), pieces sharing
LoRA set, size, steps and guidance form image groups of up to that many, each one task
(``generate_image_group``) and one slot: a slot is one GPU job, and the GPU runs a group as one job
(one UNet pass per step for all its images). Each image still equals a single run with its seed.
Otherwise every piece is its own group and task (``generate_image``).

``priority`` (``high`` | ``normal`` | ``low``, checked before any work) decides the generations' turn
for a slot: a waiting ``high`` generation takes the next free slot, in this process or any other, and
batches of equal priority share the slots evenly (``tasks/dispatch.py``).

Run it for the planned pieces of an existing batch:

    python flows/generate_images.py BATCH_ID [high|normal|low]
"""

from __future__ import annotations

import sys
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from contentforge.batch import GENERATED, SKIPPED, PieceOutcome
from contentforge.fair_share import DEFAULT_PRIORITY, priority_rank
from flows.progress import BatchProgress
from tasks import resources
from tasks.generation_queue import BatchStopped, GroupKey, generation_queue, stop_when_cancelled
from tasks.image_groups import plan_generation_groups
from tasks.images import generate_image, generate_image_group, record_failure
from tasks.run_hooks import discard_generations


@flow(
    name="generate-images",
    task_runner=ThreadPoolTaskRunner(max_workers=16),
    log_prints=False,
    on_crashed=[discard_generations],
    on_cancellation=[discard_generations],
)
def generate_images(
    batch_id: str,
    piece_ids: list[str],
    progress_artifact_id: UUID | None = None,
    progress_steps: int = 0,
    priority: str = DEFAULT_PRIORITY,
) -> dict[str, PieceOutcome]:
    """Generate every listed piece; returns each piece's outcome: generated, skipped, or failed (and why).

    A failing piece is recorded as failed with its error and does not fail the batch. Progress goes
    to the given progress artifact, or to this run's own ``batch-<id>-images`` artifact. ``priority``
    is the generations' turn for a slot.
    """
    priority_rank(priority)  # an unknown priority fails here, in one line, before any work
    logger = get_run_logger()
    backend = resources.image_backend()
    logger.info("image backend: %s", backend.describe())
    progress = BatchProgress(
        batch_id, progress_steps or len(piece_ids), progress_artifact_id, key_suffix="images"
    )
    groups, grouped = plan_generation_groups(piece_ids)
    if grouped:
        logger.info("%d pieces in %d image group(s)", len(piece_ids), len(groups))
    # Every generation waits for a slot from now on, not from when its task run starts.
    queue = generation_queue()
    # Cancelled (itself, or its batch run in this process): the batch stops within about a second.
    with stop_when_cancelled(flow_run.get_id(), batch_id):
        queued = queue.queue(groups, grouped=grouped, priority=priority, share=batch_id)
        try:
            outcome = _run_tasks(batch_id, groups, grouped, progress, logger, priority)
        finally:
            queue.discard(queued)
    if queue.stopped(batch_id):
        raise BatchStopped(f"batch {batch_id} was stopped: {len(outcome)} of {len(piece_ids)} pieces done")
    return outcome


def queue_ahead(piece_ids: list[str], priority: str = DEFAULT_PRIORITY, batch_id: str = "") -> list[GroupKey]:
    """Queue the pieces' generations in this process now, exactly as ``generate_images`` will group them.

    The batch flow calls it in local mode before starting the GPU stage subflow, so the slots start
    working while the subflow run is still being created; the subflow's tasks then claim the results.
    Returns the keys to ``generation_queue().discard`` once the stage is over.
    """
    groups, grouped = plan_generation_groups(piece_ids)
    return generation_queue().queue(groups, grouped=grouped, priority=priority, share=batch_id)


def _run_tasks(
    batch_id: str,
    groups: list[list[str]],
    grouped: bool,
    progress: BatchProgress,
    logger: Any,
    priority: str = DEFAULT_PRIORITY,
) -> dict[str, PieceOutcome]:
    """Submit one task per group and record each piece's outcome as its task completes."""
    futures: dict[PrefectFuture[Any], list[str]]
    if grouped:
        futures = {generate_image_group.submit(ids, n=len(ids), priority=priority): ids for ids in groups}
    else:
        futures = {generate_image.submit(ids[0], priority=priority): ids for ids in groups}
    total = sum(len(ids) for ids in groups)
    outcome: dict[str, PieceOutcome] = {}
    for future in as_completed(list(futures)):
        ids = futures[future]
        try:
            result = future.result()
        except BatchStopped:  # cancelled before it started: `cancelled` when the run ends
            continue
        except Exception as exc:  # one failing piece (or image group) never fails the batch
            outcome |= {piece_id: record_failure(piece_id, exc, logger) for piece_id in ids}
        else:
            if isinstance(result, dict):  # generate_image_group: each piece's outcome
                outcome |= result
            else:  # generate_image: what it stored, or None when the piece already had its image
                outcome[ids[0]] = GENERATED if result is not None else SKIPPED
        progress.advance(len(ids), note=f"{len(outcome)}/{total} images of batch {batch_id}")
    return outcome


if __name__ == "__main__":
    batch = sys.argv[1]
    ids = [p.id for p in resources.repository().pieces(batch_id=batch)]
    print(generate_images(batch, ids, priority=sys.argv[2] if len(sys.argv) > 2 else DEFAULT_PRIORITY))
