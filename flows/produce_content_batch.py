"""Produce a persona's content batch: templates → prompts → images → hooks → moderation → summary.

The main job of ContentForge. Bad input fails before any model loads; a failing piece is recorded
as failed and does not fail the batch; rerunning with the same ``batch_id`` resumes it (finished
pieces are kept, nothing is stored or charged twice). Progress and summary artifacts appear on the
flow run in the Prefect UI.

Run against a local server (``contentforge demo`` starts one):

    python flows/produce_content_batch.py mia-fit 50 instagram
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.deployments import run_deployment
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from contentforge.domain import PieceStatus
from contentforge.summary import batch_summary_markdown, batch_summary_table
from contentforge_api.gallery import gallery_url
from flows.generate_images import generate_images
from flows.progress import BatchProgress
from tasks import resources
from tasks.bootstrap import bootstrap_limits
from tasks.moderation import moderate
from tasks.planning import select_templates_and_prompts, validate_request
from tasks.text import write_hooks


@flow(name="produce-content-batch", task_runner=ThreadPoolTaskRunner(max_workers=16))
def produce_content_batch(
    persona: str,
    num_pieces: int = 50,
    platform: str = "instagram",
    tier_mix: dict[str, float] | None = None,
    include_hooks: bool = True,
    safety_check: bool = True,
    seed: int = 0,
    batch_id: str | None = None,
) -> dict[str, Any]:
    """Produce ``num_pieces`` pieces for ``persona`` (id, name or YAML/JSON file) on ``platform``.

    ``tier_mix`` maps template tiers to shares summing to 1 (default safe 0.7 / suggestive 0.3).
    Returns the batch statistics (counts by status and tier, cost, timings per stage).
    """
    logger = get_run_logger()
    stage_seconds: dict[str, float] = {}
    clock = time.perf_counter()
    request = validate_request(
        persona=persona,
        num_pieces=num_pieces,
        platform=platform,
        tier_mix=tier_mix,
        seed=seed,
        include_hooks=include_hooks,
        safety_check=safety_check,
    )
    bootstrap_limits(resources.settings())
    batch_id = batch_id or uuid.uuid4().hex
    piece_ids = select_templates_and_prompts(request, batch_id, flow_run.get_id())
    stage_seconds["plan"] = time.perf_counter() - clock
    logger.info("batch %s: %d pieces for %s on %s", batch_id, len(piece_ids), request.persona.id, platform)

    steps_per_piece = 1 + int(include_hooks) + int(safety_check)
    progress = BatchProgress(batch_id, steps_per_piece * len(piece_ids))

    clock = time.perf_counter()
    hook_futures = [write_hooks.submit(piece_id, platform) for piece_id in piece_ids] if include_hooks else []
    run_gpu_stage(batch_id, piece_ids, progress)
    progress.done += len(piece_ids)
    stage_seconds["images"] = time.perf_counter() - clock

    clock = time.perf_counter()
    for future in as_completed(hook_futures):
        _log_failure(future, "hooks", logger)
        progress.advance(note=f"hooks for batch {batch_id}")
    stage_seconds["hooks"] = time.perf_counter() - clock

    clock = time.perf_counter()
    repo = resources.repository()
    generated = [p.id for p in repo.pieces(batch_id=batch_id) if p.status is not PieceStatus.failed]
    if safety_check:
        for future in as_completed([moderate.submit(piece_id) for piece_id in generated]):
            _log_failure(future, "moderation", logger)
            progress.advance(note=f"moderation for batch {batch_id}")
    stage_seconds["moderation"] = time.perf_counter() - clock

    stats = repo.batch_stats(batch_id)
    stats["stage_seconds"] = {name: round(value, 3) for name, value in stage_seconds.items()}
    failed = stats["by_status"].get(PieceStatus.failed.value, 0)
    repo.finish_batch(batch_id, status="completed" if failed < len(piece_ids) else "failed", summary=stats)
    rows = repo.pieces(batch_id=batch_id)
    gallery = gallery_url(resources.settings(), batch_id)
    create_markdown_artifact(
        batch_summary_markdown(stats, rows, gallery),
        key=f"batch-{batch_id[:12]}-summary",
        description="Batch summary",
    )
    create_table_artifact(
        batch_summary_table(rows), key=f"batch-{batch_id[:12]}-pieces", description="Pieces"
    )
    return stats


def run_gpu_stage(batch_id: str, piece_ids: list[str], progress: BatchProgress) -> None:
    """Generate the images in-process (local mode) or as the GPU deployment (distributed mode).

    Work pools route flow runs, not tasks, so on a cluster the GPU stage is the ``generate-images``
    deployment on the ``gpu`` pool, run as a subflow of this batch; it records every piece in the
    shared database, and its failure (not a piece's) fails the batch.
    """
    settings = resources.settings()
    parameters = {
        "batch_id": batch_id,
        "piece_ids": piece_ids,
        "progress_artifact_id": progress.artifact_id,
        "progress_steps": progress.total_steps,
    }
    if not settings.gpu_deployment:
        generate_images(**parameters)
        return
    run = run_deployment(
        settings.gpu_deployment,
        parameters=parameters,
        timeout=None,
        poll_interval=2,
        tags=["contentforge", "gpu", f"batch:{batch_id[:12]}"],
        work_queue_name=settings.gpu_work_queue,
        idempotency_key=f"gpu-stage-{batch_id}-{flow_run.get_id()}",
    )
    if run.state is None or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise RuntimeError(f"GPU stage {settings.gpu_deployment} run {run.id} ended {state}")


def _log_failure(future: PrefectFuture[Any], stage: str, logger: Any) -> None:
    """A failed hook or moderation task leaves its piece unfinished; the batch goes on."""
    try:
        future.result()
    except Exception as exc:
        logger.warning("%s failed: %s: %s", stage, type(exc).__name__, exc)


if __name__ == "__main__":
    args = sys.argv[1:]
    print(
        produce_content_batch(
            persona=args[0] if args else "mia-fit",
            num_pieces=int(args[1]) if len(args) > 1 else 50,
            platform=args[2] if len(args) > 2 else "instagram",
        )
    )
