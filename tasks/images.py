"""The image-generation task: one piece, inside a slot of the global ``image-generation`` limit."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from contentforge.batch import GenerationOutcome, generate_piece, store_piece
from contentforge.domain import PieceStatus
from contentforge.errors import InvalidInput
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
    if (
        piece.status is not PieceStatus.planned
        and piece.storage_key
        and resources.storage().exists(piece.storage_key)
    ):
        return None
    repo = resources.repository()
    persona = repo.get_persona(piece.persona_id)
    if persona is None:
        raise InvalidInput(f"persona {piece.persona_id!r} of piece {piece_id} no longer exists")
    backend, config = resources.image_backend(), resources.settings()
    queued_at = datetime.now(UTC)
    timed = resources.dispatcher().run(lambda: generate_piece(piece, persona, backend, config))
    return store_piece(piece, persona, timed, resources.storage(), repo, queued_at)
