"""The GPU stage: generate and store the images of planned pieces.

Its own flow so it can be deployed to the ``gpu`` work pool (work pools route flow runs, not
tasks). Every generation runs inside a slot of the global concurrency limit ``image-generation``
through the process-wide slot dispatcher (``tasks/dispatch.py``), so at most 5 run at once across
all batches and workers while held slots stay busy.

Run it for the planned pieces of an existing batch:

    python flows/generate_images.py BATCH_ID
"""

from __future__ import annotations

import sys
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.progress import BatchProgress
from tasks import resources
from tasks.images import generate_image


@flow(name="generate-images", task_runner=ThreadPoolTaskRunner(max_workers=16), log_prints=False)
def generate_images(
    batch_id: str, piece_ids: list[str], progress_artifact_id: UUID | None = None, progress_steps: int = 0
) -> dict[str, str]:
    """Generate every listed piece; returns piece id -> 'generated', 'skipped' or 'failed: <error>'.

    A failing piece is recorded as failed with its error and does not fail the batch.
    """
    logger = get_run_logger()
    backend = resources.image_backend()
    logger.info("image backend: %s", backend.describe())
    progress = BatchProgress(batch_id, progress_steps or len(piece_ids), progress_artifact_id)
    futures = {generate_image.submit(piece_id): piece_id for piece_id in piece_ids}
    outcome: dict[str, str] = {}
    for future in as_completed(list(futures)):
        piece_id = futures[future]
        try:
            outcome[piece_id] = "generated" if future.result() is not None else "skipped"
        except Exception as exc:  # one failing piece never fails the batch
            error = f"{type(exc).__name__}: {exc}"[:2000]
            resources.repository().mark_failed(piece_id, error)
            logger.warning("piece %s failed: %s", piece_id, error)
            outcome[piece_id] = f"failed: {error}"
        progress.advance(note=f"{len(outcome)}/{len(piece_ids)} images of batch {batch_id}")
    return outcome


if __name__ == "__main__":
    batch = sys.argv[1]
    ids = [p.id for p in resources.repository().pieces(batch_id=batch)]
    print(generate_images(batch, ids))
