"""Image-generation tasks: one piece, or one micro-batch of pieces, inside one slot of ``image-generation``.

A slot covers one GPU job: a single image, or a micro-batch that the pipeline runs as one call (see
``contentforge.images.batching`` for why).

The GPU stage first puts every generation in the slot dispatcher's queue (``queue_generations``) and
only then submits the tasks, which pick up their queued generation and store it. A task run costs
several API round trips before its body starts; when generations only reached the dispatcher from
inside their task, several batches fed it slower than slots freed up (figures: docs/benchmarks.md).
Queued up front, a generation waits only for a slot. A task that finds nothing queued for it (a
retry, or a piece queued differently) generates itself, so retries and single task runs behave
exactly as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from contentforge.batch import (
    GenerationOutcome,
    TimedImage,
    adopt_stored_image,
    charge_generation,
    generate_piece,
    store_piece,
)
from contentforge.db import PieceRow
from contentforge.domain import Persona, PieceStatus
from contentforge.errors import InvalidInput
from contentforge.images.batching import generate_micro_batch
from tasks import resources
from tasks.planning import load_piece

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Queued:
    future: Future[Any]
    queued_at: datetime
    pieces: tuple[PieceRow, ...]


_queued: dict[tuple[str, ...], _Queued] = {}
_queued_lock = threading.Lock()


def _is_transient(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    """Retry everything except input errors (a bad LoRA stays bad however often we try)."""
    try:
        state.result()
    except InvalidInput:
        return False
    except Exception:
        return True
    return False


def _already_generated(piece: PieceRow) -> bool:
    """Whether the piece's image exists: recorded, or stored by a run that died before recording it.

    The second case adopts the stored image (``adopt_stored_image``), so a crash between storing and
    recording never makes a resume generate (and pay for) the same image again.
    """
    if piece.status is not PieceStatus.planned:
        return bool(piece.storage_key and resources.storage().exists(piece.storage_key))
    persona = resources.repository().get_persona(piece.persona_id)
    if persona is None:
        return False
    return adopt_stored_image(
        piece, persona, resources.storage(), resources.repository(), resources.settings()
    )


def _persona(piece: PieceRow) -> Persona:
    persona = resources.repository().get_persona(piece.persona_id)
    if persona is None:
        raise InvalidInput(f"persona {piece.persona_id!r} of piece {piece.id} no longer exists")
    return persona


def _personas_of(pieces: Sequence[PieceRow]) -> dict[str, Persona]:
    """Each distinct persona of ``pieces``, read once."""
    personas: dict[str, Persona] = {}
    for piece in pieces:
        if piece.persona_id not in personas:
            personas[piece.persona_id] = _persona(piece)
    return personas


def _generation(
    todo: Sequence[PieceRow], personas: dict[str, Persona], *, micro_batch: bool
) -> Callable[[], Any]:
    """What runs inside one slot for these pieces: one pipeline call for a micro-batch, or one image."""
    backend, config = resources.image_backend(), resources.settings()
    if micro_batch:
        return partial(generate_micro_batch, todo, personas, backend, config)
    return partial(generate_piece, todo[0], personas[todo[0].persona_id], backend, config)


def queue_generations(groups: Sequence[Sequence[str]], *, micro_batches: bool) -> list[tuple[str, ...]]:
    """Queue the generation of every group of piece ids in the slot dispatcher, before any task runs.

    Returns the keys of what was queued; pass them to ``discard_queued`` when the stage ends so that
    nothing a task never claimed stays queued. Pieces already generated, and pieces whose persona is
    gone, are left to their task (which skips or reports them). Queueing is only a head start: a group
    that cannot be prepared here is logged and left for its task to generate.
    """
    dispatcher = resources.dispatcher()
    keys: list[tuple[str, ...]] = []
    for ids in groups:
        try:
            todo = [piece for piece in map(load_piece, ids) if not _already_generated(piece)]
            personas = _personas_of(todo)
        except Exception as exc:  # the task meets the same problem and reports it on the piece
            logger.info("not queueing %s ahead of its task: %s", list(ids), exc)
            continue
        if not todo:
            continue
        key = tuple(piece.id for piece in todo)
        with _queued_lock:
            if key in _queued:  # queued already (a rerun of the stage in this process): claim that one
                continue
            work = _generation(todo, personas, micro_batch=micro_batches)
            _queued[key] = _Queued(dispatcher.submit(work), datetime.now(UTC), tuple(todo))
        keys.append(key)
    return keys


def discard_queued(keys: Sequence[tuple[str, ...]]) -> int:
    """Forget queued generations no task claimed, cancelling those no slot has started; returns how many.

    One that already started cannot be cancelled: it runs to its end and is charged then, because a
    generation that ran was paid for even though nobody keeps its image.
    """
    dropped = 0
    with _queued_lock:
        for key in keys:
            queued = _queued.pop(key, None)
            if queued is not None:
                if not queued.future.cancel():
                    queued.future.add_done_callback(partial(_charge_discarded, queued.pieces))
                dropped += 1
    return dropped


def _charge_discarded(pieces: tuple[PieceRow, ...], future: Future[Any]) -> None:
    """Charge the generations of an unclaimed queued group once they finished (never raises)."""
    if future.cancelled() or future.exception() is not None:
        return
    result = future.result()
    timed = result if isinstance(result, list) else [result]
    repo = resources.repository()
    for piece, image in zip(pieces, timed, strict=False):
        if isinstance(image, TimedImage):
            try:
                charge_generation(piece, image, repo)
            except Exception as exc:  # called from the dispatcher's thread: log, never raise
                logger.warning("could not charge the discarded generation of %s: %s", piece.id, exc)


def _claim_or_run(key: tuple[str, ...], work: Callable[[], Any]) -> tuple[Any, datetime]:
    """The result of the generation queued for ``key``, or of ``work`` run in a slot now; and when it queued.

    A queued generation is claimed once: if it failed, its exception is raised here and the task's
    retry finds nothing queued, so it generates afresh.
    """
    with _queued_lock:
        queued = _queued.pop(key, None)
    if queued is not None:
        return queued.future.result(), queued.queued_at
    queued_at = datetime.now(UTC)
    return resources.dispatcher().run(work), queued_at


_GENERATION_TASK_POLICY: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [1, 5],
    "retry_condition_fn": _is_transient,
    "cache_policy": NO_CACHE,
    "persist_result": False,
}
"""Retries, caching and results, the same for a single image and a micro-batch."""


@task(name="generate_image", task_run_name="generate-{piece_id}", **_GENERATION_TASK_POLICY)
def generate_image(piece_id: str) -> GenerationOutcome | None:
    """Generate and store one piece's image; None if it was already generated (a resumed batch)."""
    piece = load_piece(piece_id)
    if _already_generated(piece):
        return None
    personas = _personas_of([piece])
    timed, queued_at = _claim_or_run((piece.id,), _generation([piece], personas, micro_batch=False))
    return store_piece(
        piece,
        personas[piece.persona_id],
        timed,
        resources.storage(),
        resources.repository(),
        queued_at,
        c2pa_credentials=resources.c2pa_credentials(),
    )


@task(name="generate_image_batch", task_run_name="generate-{piece_ids[0]}-x{n}", **_GENERATION_TASK_POLICY)
def generate_image_batch(piece_ids: list[str], n: int = 0) -> dict[str, str]:
    """Generate one micro-batch of pieces in one slot and store each image as soon as the batch is done.

    Returns piece id -> 'generated', 'skipped' or 'failed: <error>'; a piece that fails on its own (after
    the micro-batch was retried piece by piece) is recorded as failed without failing the others.
    """
    logger = get_run_logger()
    repo = resources.repository()
    pieces = [load_piece(piece_id) for piece_id in piece_ids]
    outcome = {piece.id: "skipped" for piece in pieces if _already_generated(piece)}
    todo = [piece for piece in pieces if piece.id not in outcome]
    if not todo:
        return outcome
    personas = _personas_of(todo)
    results, queued_at = _claim_or_run(
        tuple(piece.id for piece in todo), _generation(todo, personas, micro_batch=True)
    )
    for piece, result in zip(todo, results, strict=True):
        if isinstance(result, Exception):
            error = f"{type(result).__name__}: {result}"[:2000]
            repo.mark_failed(piece.id, error)
            logger.warning("piece %s failed: %s", piece.id, error)
            outcome[piece.id] = f"failed: {error}"
            continue
        store_piece(
            piece,
            personas[piece.persona_id],
            result,
            resources.storage(),
            repo,
            queued_at,
            c2pa_credentials=resources.c2pa_credentials(),
        )
        outcome[piece.id] = "generated"
    return outcome
