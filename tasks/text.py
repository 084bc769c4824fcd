"""Hook tasks: the hooks of a batch's pieces, written several pieces to a task run.

Why several: every task run costs the Prefect server three state events (Pending, Running, Completed)
that it stores and records; one hook task per piece was a third of a batch's task runs. On the
embedded SQLite server every write waits for one lock, so ten pieces per task run cut a batch's
events by about a quarter (figures: docs/benchmarks.md) while the hooks are still all written from
the batch's start, beside the image generation. A piece whose hooks fail does not stop the others:
the task writes every piece it can, then fails naming the ones it could not, and its retries write
only those (a piece that has hooks keeps them: ``write_piece_hooks``).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from contentforge.batch import write_piece_hooks
from contentforge.domain import Platform
from tasks import resources
from tasks.planning import load_piece

HOOKS_PER_TASK = 10
"""Pieces whose hooks one task run writes."""


class HooksFailed(RuntimeError):
    """Some pieces of a hook task got no hooks; the message names each and why."""


@task(
    task_run_name="hooks-{piece_ids[0]}-x{n}",
    retries=2,
    retry_delay_seconds=2,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def write_hooks(piece_ids: list[str], platform: str, n: int = 0) -> int:
    """Write five hook variations for each piece within the platform's rules; returns how many were
    written. ``n`` only names the run."""
    written = 0
    failures = []
    for piece_id in piece_ids:
        try:
            written += _write_piece_hooks(piece_id, platform)
        except Exception as exc:  # the other pieces still get theirs
            failures.append(f"{piece_id}: {type(exc).__name__}: {exc}")
    if failures:
        raise HooksFailed(f"no hooks for {len(failures)} of {len(piece_ids)} pieces: " + "; ".join(failures))
    return written


def _write_piece_hooks(piece_id: str, platform: str) -> int:
    piece = load_piece(piece_id)
    repo = resources.repository()
    persona = repo.get_persona(piece.persona_id)
    if persona is None:
        raise LookupError(f"persona {piece.persona_id!r} of piece {piece_id} no longer exists")
    writer = resources.hook_writer()
    return resources.run_llm(lambda: write_piece_hooks(piece, persona, Platform(platform), writer, repo))


def submit_hooks(piece_ids: list[str], platform: str) -> dict[str, PrefectFuture[int]]:
    """Submit the pieces' hook tasks, ``HOOKS_PER_TASK`` pieces each; maps each piece to its task's future."""
    futures: dict[str, PrefectFuture[int]] = {}
    for start in range(0, len(piece_ids), HOOKS_PER_TASK):
        chunk = piece_ids[start : start + HOOKS_PER_TASK]
        future = write_hooks.submit(chunk, platform, n=len(chunk))
        futures |= dict.fromkeys(chunk, future)
    return futures
