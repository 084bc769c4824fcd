"""Produce a persona's content batch: templates → prompts → images → hooks → moderation → summary.

The main job of ContentForge. Bad input fails before any model loads; a failing piece is recorded
as failed and does not fail the batch; rerunning with the same ``batch_id`` resumes it (finished
pieces are kept, nothing is stored or charged twice). Progress and summary artifacts appear on the
flow run in the Prefect UI.

``priority`` (``high`` | ``normal`` | ``low``) is the batch's turn for the ``image-generation`` slots: a
waiting ``high`` generation takes the next free slot, across processes too, and batches of equal
priority share the slots evenly (``tasks/dispatch.py``); on a cluster a ``high`` batch's GPU stage also
goes to the gpu pool's ``priority`` work queue.

``mode`` (``manual`` | ``auto`` | ``assisted``) decides each piece's LoRAs and parameters: ``manual`` (the
default) the settings', exactly as before modes; ``auto`` the recommender's and optimizer's, per piece;
``assisted`` the same recommendation, shown in a form the run pauses for until a person accepts or edits
it (``flows/batch_modes.py``). Every AUTO or ASSISTED piece's generation record carries the one-line
explanation of what was chosen and why.

Run against a local server (``contentforge demo`` starts one):

    python flows/produce_content_batch.py mia-fit 50 instagram
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import replace
from functools import partial
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from contentforge.batch import BatchRequest
from contentforge.db.batch_progress import PieceStatusWatcher
from contentforge.db.leases import kept_alive, lease_owner
from contentforge.domain import PieceStatus
from contentforge.fair_share import DEFAULT_PRIORITY, priority_rank
from contentforge.piece_requests import PieceRequest, requested_tier_mix
from contentforge.summary import batch_summary_markdown, batch_summary_table, gallery_url
from flows.batch_modes import plan_by_mode
from flows.generate_images import generate_images, queue_ahead
from flows.progress import BatchProgress
from tasks import resources
from tasks.bootstrap import bootstrap_limits
from tasks.child_runs import cancel_child_runs
from tasks.generation_queue import BatchStopped, generation_queue, stop_when_cancelled
from tasks.gpu_workers import run_on_gpu_workers
from tasks.moderation import moderate
from tasks.piece_requests import apply_request, check_request
from tasks.planning import select_templates_and_prompts, take_batch, validate_request
from tasks.run_hooks import mark_batch_cancelled, mark_batch_crashed
from tasks.text import submit_hooks


@flow(
    name="produce-content-batch",
    task_runner=ThreadPoolTaskRunner(max_workers=16),
    on_crashed=[mark_batch_crashed],
    on_cancellation=[mark_batch_cancelled],
)
def produce_content_batch(
    persona: str,
    num_pieces: int = 50,
    platform: str = "instagram",
    tier_mix: dict[str, float] | None = None,
    include_hooks: bool = True,
    safety_check: bool = True,
    seed: int = 0,
    batch_id: str | None = None,
    wait_for_runner_s: float = 0.0,
    priority: str = DEFAULT_PRIORITY,
    mode: str = "manual",
    template_id: str | None = None,
    image_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Produce ``num_pieces`` pieces for ``persona`` (id, name or YAML/JSON file) on ``platform``.

    ``tier_mix`` maps template tiers to shares summing to 1 (default safe 0.7 / suggestive 0.3).
    Returns the batch statistics (counts by status and tier, cost, timings per stage). One runner per
    batch: a batch another run holds is refused (``BatchBusy``), or waited for up to
    ``wait_for_runner_s``. ``priority``: ``high`` | ``normal`` | ``low``, the generations' turn for a slot.
    ``mode``: ``manual`` | ``auto`` | ``assisted`` (the module docstring says what each does).
    ``template_id`` (every piece uses that template, so the tier mix is its tier) and ``image_params``
    (``prompt``, ``negative_prompt``, ``steps``, ``guidance_scale``, ``width``, ``height``,
    ``scheduler``) are one request's own choices (``contentforge.piece_requests``); they win over a mode's.
    """
    stage_seconds: dict[str, float] = {}
    clock = time.perf_counter()
    priority_rank(priority)  # an unknown priority fails in one line, before any work
    piece_request = check_request(template_id, image_params)  # before any work, too
    tier_mix = requested_tier_mix(template_id) or tier_mix
    request = validate_request(
        persona=persona,
        num_pieces=num_pieces,
        platform=platform,
        tier_mix=tier_mix,
        seed=seed,
        include_hooks=include_hooks,
        safety_check=safety_check,
        batch_id=batch_id,  # a run started straight from a deployment is checked like the CLI's and API's
        mode=mode,
    )
    # The limits are read (and created where absent) beside taking and planning the batch: they are
    # HTTP round trips to the server, waited for only before the first generation (issue 18).
    limits = bootstrap_limits.submit(resources.settings())
    batch_id = batch_id or uuid.uuid4().hex
    owner = lease_owner(flow_run.get_id())
    take_batch(request, batch_id, flow_run.get_id(), owner, wait_for_runner_s)
    repo = resources.repository()
    lease_s = resources.settings().batch_lease_s
    renew = partial(repo.renew_batch_lease, batch_id, owner, lease_s)
    # Cancelled: the worker's SIGTERM (below) or, if it is late, this watcher (a read of the run a second)
    # stops the batch's generations at once; the body then marks the batch and ends.
    with (
        kept_alive(renew, lease_s / 3, f"batch {batch_id}"),
        stop_when_cancelled(flow_run.get_id(), batch_id, new_run=True) as stopped,
    ):
        try:
            stats = _produce(
                batch_id,
                request,
                platform,
                include_hooks,
                safety_check,
                stage_seconds,
                clock,
                owner,
                priority,
                stopped,
                piece_request,
                limits,
            )
        except BatchStopped:
            # Its run is Cancelling: the batch is cancelled now; the pieces made so far are kept.
            repo.end_batch_run(batch_id, "cancelled", owner=owner)
            if resources.settings().gpu_deployment:
                cancel_child_runs(flow_run.get_id() or "", f"its batch {batch_id} was cancelled")
            raise
        except Exception:
            # A failure of the run itself (not of a piece); a crash or cancellation is left to the hooks.
            repo.end_batch_run(batch_id, "failed", owner=owner)
            raise
        except BaseException:
            # Told to stop (cancellation, SIGTERM): the in-process GPU stage's task would run on to its
            # last image (Prefect waits for running tasks before the process exits), and one on another
            # worker would keep this process waiting for it; stop both so the batch stops now.
            generation_queue().stop(batch_id)
            if resources.settings().gpu_deployment:
                cancel_child_runs(flow_run.get_id() or "", f"its batch {batch_id} was stopped")
            raise
    return stats


def _produce(
    batch_id: str,
    request: BatchRequest,
    platform: str,
    include_hooks: bool,
    safety_check: bool,
    stage_seconds: dict[str, float],
    clock: float,
    owner: str,
    priority: str = DEFAULT_PRIORITY,
    stopped: threading.Event | None = None,
    piece_request: PieceRequest | None = None,
    limits: PrefectFuture[Any] | None = None,
) -> dict[str, Any]:
    """Plan, generate, write hooks, moderate and summarise a batch whose lease this run holds.

    ``limits``: the bootstrap of the batch's concurrency limits, waited for (and its failure raised)
    before the first generation. ``BatchStopped`` once ``stopped`` is set (the run is Cancelling)."""
    logger = get_run_logger()
    template_id = piece_request.template_id if piece_request is not None else None
    piece_ids = select_templates_and_prompts(request, batch_id, template_id)
    if request.mode != "manual":  # AUTO or ASSISTED: each piece's LoRAs and parameters (may pause)
        prompt = piece_request.params.prompt if piece_request is not None else None
        plan_by_mode(request, batch_id, piece_ids, prompt)
        if piece_request is not None and prompt is not None:
            # The plans were made for the user's prompt and carry it with their LoRAs' trigger words;
            # writing the bare prompt again would drop those.
            piece_request = replace(
                piece_request, params=piece_request.params.model_copy(update={"prompt": None})
            )
    if piece_request is not None and not piece_request.empty:
        apply_request(request, piece_ids, piece_request)  # the request's own prompt and parameters win
    stage_seconds["plan"] = time.perf_counter() - clock
    logger.info("batch %s: %d pieces for %s on %s", batch_id, len(piece_ids), request.persona.id, platform)

    steps_per_piece = 1 + int(include_hooks) + int(safety_check)
    progress = BatchProgress(batch_id, steps_per_piece * len(piece_ids))
    # In local mode the generations start now, while the GPU stage's subflow run is being created.
    remote = resources.settings().gpu_deployment or resources.settings().gpu_task_workers
    if limits is not None:
        limits.result()  # every generation holds a slot of a limit that must exist first
    queued = [] if remote else queue_ahead(piece_ids, priority, batch_id)
    try:
        # The GPU stage first: it holds one of the task runner's threads for its whole run.
        images = gpu_stage.submit(batch_id, piece_ids, priority)
        hook_futures = submit_hooks(piece_ids, platform) if include_hooks else {}  # 10 pieces a task
        stage_seconds |= follow_production(
            batch_id, images, hook_futures, safety_check, progress, logger, stopped=stopped
        )
    finally:
        generation_queue().discard(queued)

    repo = resources.repository()
    stats = repo.batch_stats(batch_id)
    stages = {name: round(value, 3) for name, value in stage_seconds.items()}
    # What the run returns and the batch keeps: JSON (Prefect stores it), the stats and the stage times.
    summary = stats.model_dump(mode="json") | {"stage_seconds": stages}
    failed = stats.by_status.get(PieceStatus.failed.value, 0)
    status = "completed" if failed < len(piece_ids) else "failed"
    if not repo.finish_batch(batch_id, status=status, summary=summary, owner=owner):
        logger.error("batch %s: another runner took the batch over; its summary stands", batch_id)
    rows = repo.pieces(batch_id=batch_id)
    gallery = gallery_url(resources.settings(), batch_id)
    create_markdown_artifact(
        batch_summary_markdown(stats, rows, gallery, stages),
        key=f"batch-{batch_id}-summary",
        description="Batch summary",
    )
    create_table_artifact(batch_summary_table(rows), key=f"batch-{batch_id}-pieces", description="Pieces")
    return summary


@task(name="gpu-stage", task_run_name="gpu-stage", cache_policy=NO_CACHE, persist_result=False)
def gpu_stage(batch_id: str, piece_ids: list[str], priority: str = DEFAULT_PRIORITY) -> None:
    """The GPU stage as a task, so that the batch flow can moderate pieces while it runs."""
    run_gpu_stage(batch_id, piece_ids, priority)


def run_gpu_stage(batch_id: str, piece_ids: list[str], priority: str = DEFAULT_PRIORITY) -> None:
    """Generate the images in-process (local mode) or as the GPU deployment (distributed mode).

    Work pools route flow runs, not tasks, so on a cluster the GPU stage is the ``generate-images``
    deployment on the ``gpu`` pool, run as a subflow of this batch; it records every piece in the
    shared database, and its failure (not a piece's) fails the batch. With warm GPU workers
    (``CONTENTFORGE_GPU_TASK_WORKERS``) the pieces go to long-lived worker processes instead
    (``tasks/gpu_workers.py``), which keep the model loaded across batches.
    """
    settings = resources.settings()
    if settings.gpu_task_workers:
        run_on_gpu_workers(batch_id, piece_ids, priority)
        return
    if not settings.gpu_deployment:
        # The subflow sends its own heartbeats although its parent's would tell the server the process
        # lives: when the process dies, the crash automation marks a run Crashed only if that run sent
        # heartbeats, and a subflow without them would stay Running forever. Cost: Prefect joins the
        # heartbeat thread in 1 s steps, so the stage ends up to 1 s after its last task.
        generate_images(batch_id=batch_id, piece_ids=piece_ids, priority=priority)
        return
    run = run_deployment(
        settings.gpu_deployment,
        parameters={"batch_id": batch_id, "piece_ids": piece_ids, "priority": priority},
        timeout=None,
        poll_interval=2,
        tags=["contentforge", "gpu", f"batch:{batch_id}"],
        # A high batch's GPU stage is served first by the gpu workers too (unless a queue is configured).
        work_queue_name=settings.gpu_work_queue or ("priority" if priority == "high" else None),
        idempotency_key=f"gpu-stage-{batch_id}-{flow_run.get_id()}",
    )
    if run.state is None or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise RuntimeError(f"GPU stage {settings.gpu_deployment} run {run.id} ended {state}")


def follow_production(
    batch_id: str,
    images: PrefectFuture[None],
    hook_futures: dict[str, PrefectFuture[Any]],
    safety_check: bool,
    progress: BatchProgress,
    logger: Any,
    poll_s: float = 0.25,
    stopped: threading.Event | None = None,
) -> dict[str, float]:
    """Moderate each piece as soon as its image is stored and its hooks are written, until all are done.

    Why not moderate after the GPU stage: moderation would then add its whole duration to the batch
    (figures: docs/benchmarks.md). The GPU stage may run on another machine, so stored images are
    found in the shared database rather than through futures, by a ``PieceStatusWatcher`` whose polls
    read only what changed since the last one. Returns the seconds
    from the start of production until the images, the hooks and the moderation were each done; a
    failed GPU stage is raised only after everything it produced has been moderated. Once ``stopped``
    is set (the run is Cancelling), ``BatchStopped`` at the next poll.
    """
    watcher = PieceStatusWatcher(resources.repository().sessions, batch_id)
    started = time.perf_counter()
    done_after: dict[str, float] = {}
    moderation: dict[str, PrefectFuture[Any]] = {}
    reported: set[tuple[str, str]] = set()
    logged: set[int] = set()  # a hook task covers several pieces: its failure is logged once
    statuses: dict[str, str] = {}
    final_read = False
    while True:
        if stopped is not None and stopped.is_set():
            raise BatchStopped(f"batch {batch_id} stopped: its run is cancelling")
        images_done = images.wrapped_future.done()  # read before the rows: then the rows are final
        if not final_read:  # once the images are done and read in full, nothing there changes any more
            statuses = watcher.poll(full=images_done)
            final_read = images_done
        produced = [pid for pid, status in statuses.items() if status != PieceStatus.failed.value]
        if safety_check:
            for piece_id in produced:
                hooks = hook_futures.get(piece_id)
                if piece_id not in moderation and (hooks is None or _done(hooks)):
                    moderation[piece_id] = moderate.submit(piece_id)
        for stage, futures in (("hooks", hook_futures), ("moderation", moderation)):
            for piece_id, future in futures.items():
                if (stage, piece_id) not in reported and _done(future):
                    reported.add((stage, piece_id))
                    if id(future) not in logged:
                        logged.add(id(future))
                        _log_failure(future, stage, logger)
        progress.set_done(len(statuses) + len(reported), note=f"batch {batch_id}")
        elapsed = round(time.perf_counter() - started, 3)
        if images_done:
            done_after.setdefault("images", elapsed)
        if all(_done(future) for future in hook_futures.values()):
            done_after.setdefault("hooks", elapsed)
        if safety_check and images_done and all(_done(moderation.get(p)) for p in produced):
            done_after.setdefault("moderation", elapsed)
        if {"images", "hooks"} <= done_after.keys() and ("moderation" in done_after or not safety_check):
            break
        pending = [f.wrapped_future for f in [images, *hook_futures.values(), *moderation.values()]]
        pending = [future for future in pending if not future.done()]
        if pending:
            wait(pending, timeout=poll_s, return_when=FIRST_COMPLETED)
        else:
            time.sleep(poll_s)
    images.result()  # a failed GPU stage fails the batch, once nothing it produced is left waiting
    return done_after


def _done(future: PrefectFuture[Any] | None) -> bool:
    """Whether a submitted task has finished, without asking the API (``future.state`` would)."""
    return future is not None and future.wrapped_future.done()


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
