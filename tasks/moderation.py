"""The moderation task: image plus texts, verdict saved on the piece."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from contentforge.batch import FINISHED, moderate_piece
from tasks import resources
from tasks.planning import load_piece


@task(
    task_run_name="moderate-{piece_id}",
    retries=2,
    retry_delay_seconds=2,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def moderate(piece_id: str) -> str:
    """Moderate the stored piece and return its verdict; a finished piece keeps its verdict."""
    piece = load_piece(piece_id)
    if piece.status in FINISHED and piece.verdict is not None:
        return piece.verdict.value
    return moderate_piece(piece, resources.storage(), resources.moderator(), resources.repository())
