"""Hook and caption tasks."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from contentforge.batch import write_piece_hooks
from contentforge.domain import Platform
from tasks import resources
from tasks.planning import load_piece


@task(
    task_run_name="hooks-{piece_id}",
    retries=2,
    retry_delay_seconds=2,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def write_hooks(piece_id: str, platform: str) -> int:
    """Write five hook variations for the piece within the platform's rules; returns how many."""
    piece = load_piece(piece_id)
    repo = resources.repository()
    persona = repo.get_persona(piece.persona_id)
    if persona is None:
        raise LookupError(f"persona {piece.persona_id!r} of piece {piece_id} no longer exists")
    writer = resources.hook_writer()
    return resources.run_llm(lambda: write_piece_hooks(piece, persona, Platform(platform), writer, repo))
