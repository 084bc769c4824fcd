"""State hooks for runs that end without finishing: Crashed or Cancelled.

A run that ends this way returns nothing to the flow body, so what it held is given back here:
``produce-content-batch`` marks its batch ``crashed`` or ``cancelled`` and releases its lease, and
``generate-images`` cancels its generations still queued in this process (so the slot holders give
their slots of the global limit back). Prefect runs these hooks in the run's own process when the
engine notices (a termination signal, a cancellation it owns) or in the worker that supervised it.

A process killed with ``kill -9`` runs no hook at all: the crash automation (``tasks/bootstrap.py``)
marks its run Crashed once its heartbeats stop, and the batch's lease expiring is how ContentForge
learns (``Repository.reconcile_expired_batches``); a publication it claimed is resumed once its
claim's lease runs out.
"""

from __future__ import annotations

from typing import Any

from prefect import Flow
from prefect.client.schemas.objects import FlowRun, State
from prefect.logging.loggers import flow_run_logger

from contentforge.db.leases import lease_owner
from tasks import resources
from tasks.child_runs import cancel_child_runs
from tasks.generation_queue import generation_queue


def _batch_of(flow_run: FlowRun) -> str | None:
    """The batch a batch-flow run works on: its ``batch_id`` parameter, or the batch that records this run."""
    batch_id = (flow_run.parameters or {}).get("batch_id")
    if batch_id:
        return str(batch_id)
    run_id = str(flow_run.id)
    recent = resources.repository().latest_batches(limit=100)
    return next((batch.id for batch in recent if batch.flow_run_id == run_id), None)


def end_batch_run(flow: Flow[..., Any], flow_run: FlowRun, status: str) -> bool:
    """Mark the run's batch ``status`` and release its lease, if this run still holds the lease.

    The hook may run in the run's process or in the worker that ran it, so the holder is matched by
    flow run rather than by process; a resume that took the batch over holds it under its own run
    and is left alone. A lease that already expired is reconciled as ``crashed``.
    """
    batch_id = _batch_of(flow_run)
    if batch_id is None:
        return False
    repo = resources.repository()
    lease = repo.batch_lease(batch_id)
    if lease is None:
        return batch_id in repo.reconcile_expired_batches(batch_id)
    holder = lease[0]
    if holder != lease_owner(str(flow_run.id)) and not holder.endswith(f"flow run {flow_run.id}"):
        return False
    ended = repo.end_batch_run(batch_id, status, owner=holder)
    if ended:
        flow_run_logger(flow_run, flow).warning(
            "batch %s marked %s and its lease released; resume it with the same batch id", batch_id, status
        )
    return ended


def mark_batch_crashed(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """``on_crashed`` of ``produce-content-batch``: the batch is ``crashed``, its lease free for a resume.

    Its GPU stage on another worker is cancelled too, so it does not keep writing the batch's pieces
    while a resume does.
    """
    end_batch_run(flow, flow_run, "crashed")
    cancel_child_runs(flow_run.id, f"its batch run {flow_run.id} crashed", parent_dead=True)


def mark_batch_cancelled(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """``on_cancellation`` of ``produce-content-batch``: the batch is ``cancelled``, its lease released.

    Its GPU stage, a run of the ``generate-images`` deployment on another worker, is not stopped by
    Prefect with its parent, so it is cancelled here too (the flow body already tried when it was
    told to stop; this covers a body that never got the signal).
    """
    end_batch_run(flow, flow_run, "cancelled")
    cancelled = cancel_child_runs(flow_run.id, f"its batch run {flow_run.id} was cancelled")
    if cancelled:
        flow_run_logger(flow_run, flow).warning("cancelled %d GPU-stage run(s) of this batch", cancelled)


def discard_generations(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """``on_crashed``/``on_cancellation`` of ``generate-images``: cancel its generations still queued here.

    The stage's own ``finally`` does the same when the flow body unwinds; this covers a hook run after
    a body that never got there. Generations already running finish and are recorded or charged.
    """
    dropped = generation_queue().discard_pieces((flow_run.parameters or {}).get("piece_ids") or [])
    if dropped:
        flow_run_logger(flow_run, flow).warning("%s: %d queued generation(s) cancelled", state.name, dropped)


def note_publish_end(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """``on_crashed``/``on_cancellation`` of ``publish-due``: its claims are left to expire, on purpose.

    A claim may be mid-post (the platform accepted it, the ledger not yet told): releasing it early
    could publish the piece twice; expiring, it is resumed with its stored container id instead.
    """
    lease_s = resources.settings().publish_stale_after_s
    flow_run_logger(flow_run, flow).warning(
        "%s: the rows this run claimed are resumed by a later run once their claim expires "
        "(CONTENTFORGE_PUBLISH_STALE_AFTER_S=%d)",
        state.name,
        lease_s,
    )


STEP_LEFTOVERS: dict[str, str] = {
    "research-brand": "the brand DNA is saved in one write at the end, so it is there whole or not at "
    "all; research the brand again to save it",
    "create-personas": "personas are saved one by one after the selection, then linked to the brand: a "
    "run stopped during that save may have saved some without the link; start the step again",
    "plan-topics": "its proposed topics stay proposed, as after an approval timeout; plan the month "
    "again for a new decision",
    "write-blog-post": "its draft stays proposed, as after an approval timeout; write the post again for "
    "a new decision",
    "derive-social-posts": "the captions are saved together at the end, so all or none of them are "
    "there; derive them again",
    "schedule-batch": "publications already scheduled keep their slots; a rerun schedules the rest and "
    "nothing twice",
    "review-pieces": "decisions already applied are kept; pieces without one stay needs_review for the "
    "next review",
}
"""What a strategy, scheduling or review run leaves when it ends Cancelled or Crashed, by flow name."""


def note_step_end(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """``on_cancellation``/``on_crashed`` of the strategy, scheduling and review flows: say what is left.

    These flows hold no lease and no slot, and each write they make is whole (one transaction, or
    idempotent on a rerun), so there is nothing to undo: the job reads Cancelled or Crashed from
    Prefect, and the run's log says what stays and how to carry on (``STEP_LEFTOVERS``).
    """
    left = STEP_LEFTOVERS.get(flow.name, "what it saved so far is kept; run it again to finish")
    flow_run_logger(flow_run, flow).warning("%s: %s", state.name, left)
