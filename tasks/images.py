"""Image-generation tasks: one piece, or one micro-batch of pieces, inside one slot of ``image-generation``.

A slot covers one GPU job: a single image, or a micro-batch that the pipeline runs as one call (see
``contentforge.images.batching`` for why).
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from contentforge.batch import GenerationOutcome, generate_piece, store_piece
from contentforge.db import PieceRow
from contentforge.domain import Persona, PieceStatus
from contentforge.errors import InvalidInput
from contentforge.images.batching import generate_micro_batch
from tasks import resources
from tasks.planning import load_piece


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
    return bool(
        piece.status is not PieceStatus.planned
        and piece.storage_key
        and resources.storage().exists(piece.storage_key)
    )


def _persona(piece: PieceRow) -> Persona:
    persona = resources.repository().get_persona(piece.persona_id)
    if persona is None:
        raise InvalidInput(f"persona {piece.persona_id!r} of piece {piece.id} no longer exists")
    return persona


@task(
    name="generate_image",
    task_run_name="generate-{piece_id}",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=_is_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def generate_image(piece_id: str) -> GenerationOutcome | None:
    """Generate and store one piece's image; None if it was already generated (a resumed batch)."""
    piece = load_piece(piece_id)
    if _already_generated(piece):
        return None
    repo = resources.repository()
    persona = _persona(piece)
    backend, config = resources.image_backend(), resources.settings()
    queued_at = datetime.now(UTC)
    timed = resources.dispatcher().run(lambda: generate_piece(piece, persona, backend, config))
    return store_piece(
        piece,
        persona,
        timed,
        resources.storage(),
        repo,
        queued_at,
        c2pa_credentials=resources.c2pa_credentials(),
    )


@task(
    name="generate_image_batch",
    task_run_name="generate-{piece_ids[0]}-x{n}",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=_is_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
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
    personas: dict[str, Persona] = {}
    for piece in todo:
        if piece.persona_id not in personas:
            personas[piece.persona_id] = _persona(piece)
    backend, config = resources.image_backend(), resources.settings()
    queued_at = datetime.now(UTC)
    results = resources.dispatcher().run(lambda: generate_micro_batch(todo, personas, backend, config))
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
