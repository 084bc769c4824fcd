"""Image-generation tasks: store the image of one piece, or of one image group, generated in one slot.

A slot of ``image-generation`` covers one GPU job: a single image, or an image group that the
pipeline runs as one call (``contentforge.images.batching`` says why). Each task claims the
generation its stage queued before the task existed (``tasks/generation_queue.py`` draws the whole
sequence), or generates in a slot itself when nothing is queued for it (a retry, a lone task run),
so retries and single task runs behave exactly as without the queue. Then it stores and records.

Both take the batch's ``priority`` (``high`` | ``normal`` | ``low``), which decides the generation's
turn for a slot when it runs from here (``tasks/dispatch.py``).

Both tasks retry twice (after 1 s, then 5 s) unless the error is the input's (a bad LoRA stays bad
however often we try) or the batch was stopped (``BatchStopped``: cancelled, its pieces stay planned).
Their results are not cached nor persisted: the database is the record.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import Task

from contentforge.batch import GENERATED, SKIPPED, GenerationOutcome, PieceOutcome, store_piece
from contentforge.errors import InvalidInput
from contentforge.fair_share import DEFAULT_PRIORITY
from tasks import resources
from tasks.generation_queue import (
    BatchStopped,
    already_generated,
    generation_queue,
    group_work,
    image_work,
    personas_of,
)
from tasks.planning import load_piece


def retry_unless_invalid_input(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry everything except input errors (a bad LoRA stays bad however often we try) and a stopped
    (cancelled) batch, whose generations must not start again."""
    try:
        state.result()
    except (InvalidInput, BatchStopped):
        return False
    except Exception:
        return True
    return False


def record_failure(
    piece_id: str, exc: BaseException, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
) -> PieceOutcome:
    """Record the piece as failed with its error, which fails neither its group nor the batch."""
    outcome = PieceOutcome.failure(exc)
    if not resources.repository().mark_failed(piece_id, outcome.error or ""):
        # Its image was recorded before its group failed: the piece keeps it.
        logger.warning("piece %s kept its image; its group failed afterwards: %s", piece_id, outcome.error)
        return GENERATED
    logger.warning("piece %s failed: %s", piece_id, outcome.error)
    return outcome


@task(
    name="generate_image",
    task_run_name="generate-{piece_id}",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=retry_unless_invalid_input,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def generate_image(piece_id: str, priority: str = DEFAULT_PRIORITY) -> GenerationOutcome | None:
    """Generate and store one piece's image; None if it was already generated (a resumed batch)."""
    piece = load_piece(piece_id)
    if already_generated(piece):
        return None
    personas = personas_of([piece])
    timed, queued_at = generation_queue().claim_or_run(
        (piece.id,), image_work(piece, personas), priority=priority, share=piece.batch_id
    )
    return store_piece(
        piece,
        personas[piece.persona_id],
        timed,
        resources.storage(),
        resources.repository(),
        queued_at,
        c2pa_credentials=resources.c2pa_credentials(),
    )


@task(
    name="generate_image_group",
    task_run_name="generate-{piece_ids[0]}-x{n}",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=retry_unless_invalid_input,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def generate_image_group(
    piece_ids: list[str], n: int = 0, priority: str = DEFAULT_PRIORITY
) -> dict[str, PieceOutcome]:
    """Generate one image group in one slot and store each image as soon as the group is done.

    Returns each piece's outcome; a piece that fails on its own (after the group's pipeline call was
    retried piece by piece) is recorded as failed without failing the others. ``n`` only names the run.
    """
    logger = get_run_logger()
    pieces = [load_piece(piece_id) for piece_id in piece_ids]
    outcome = {piece.id: SKIPPED for piece in pieces if already_generated(piece)}
    todo = [piece for piece in pieces if piece.id not in outcome]
    if not todo:
        return outcome
    personas = personas_of(todo)
    key = tuple(piece.id for piece in todo)
    results, queued_at = generation_queue().claim_or_run(
        key, group_work(todo, personas), priority=priority, share=todo[0].batch_id
    )
    for piece, result in zip(todo, results, strict=True):
        if isinstance(result, Exception):
            outcome[piece.id] = record_failure(piece.id, result, logger)
            continue
        store_piece(
            piece,
            personas[piece.persona_id],
            result,
            resources.storage(),
            resources.repository(),
            queued_at,
            c2pa_credentials=resources.c2pa_credentials(),
        )
        outcome[piece.id] = GENERATED
    return outcome
