"""The moderation task: image plus texts, verdict saved on the piece.

Each run executes inside a slot of the global concurrency limit ``moderation`` (setting
``moderation_concurrency_limit_name``, size ``moderation_concurrency``, created by the batch flow's
bootstrap step), so a remote moderation API sees a bounded number of requests from all workers and
batches together. Slots are taken through the same slot dispatcher as image generation: 50 tasks
blocking on ``concurrency()`` each would sleep on the server's Retry-After and leave slots idle,
stretching seconds of moderation work into minutes (figures: docs/benchmarks.md).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from contentforge.batch import FINISHED, moderate_piece
from contentforge.domain import PieceStatus
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
    """Moderate the stored piece and return its verdict; a finished or held piece keeps its verdict.

    Only while that verdict is bound to the piece's current content: a piece moderated before verdicts
    were bound (an upgraded database) or changed since is moderated again, so resuming its batch makes
    it publishable again.
    """
    piece = load_piece(piece_id)
    decided = piece.status in FINISHED or piece.status is PieceStatus.needs_review
    if decided and piece.verdict is not None and piece.verdict_is_bound:
        return piece.verdict.value
    return resources.moderation_dispatcher().run(
        lambda: moderate_piece(piece, resources.storage(), resources.moderator(), resources.repository())
    )
