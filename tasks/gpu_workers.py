"""Warm GPU workers: long-lived processes generate a batch's images as Prefect background task runs.

Why: in distributed mode the ``generate-images`` deployment makes every batch's GPU stage a new
flow-run process, which loads the model again (seconds for SDXL from a warm disk cache, far more for
Flux or from network storage). A ``contentforge gpu-worker`` process is Prefect's task worker serving
``generate_pieces_on_gpu`` for its whole life, so it keeps ``tasks/resources.py``'s backend and the
pipeline pool: model loads = GPU workers, not batches (``MODEL_LOADS`` counts them).

Batch side (``run_on_gpu_workers``, the batch flow's GPU stage when ``CONTENTFORGE_GPU_TASK_WORKERS``
is set): the pieces go out as background task runs (``.delay``) of ``gpu_task_pieces`` pieces each,
tagged with the batch, children of the batch's flow run in the Prefect UI. The batch flow already
finds stored images in the shared database (``PieceStatusWatcher``); this module follows the runs'
states, one read of all of them and one of the live task workers per second, for what the database
cannot say: a run that failed (its pieces are recorded failed) or whose worker died. A run whose
pieces all have their images recorded is done for the batch without waiting for its state, which
Prefect records from its worker's events, seconds late under load.

Worker side: a run plans its image groups with the worker's own backend (its micro-batch), queues
them in the worker's generation queue and stores each as it is done, exactly as the ``generate-images``
flow does. Every generation goes through the worker's slot dispatcher (``tasks/dispatch.py``), so it
runs inside a slot of the global ``image-generation`` limit: the limit holds across all workers.

A worker that dies loses nothing that is not retried. A run says in its state which worker runs it
(a ``Claimed`` state: "on GPU worker HOST-PID", Prefect's own name for the task worker); once that
worker has been gone from the server's live task workers for ``grace_s``, the batch marks the run
``Superseded`` and sends its pieces again. A run no worker claimed (still ``Scheduled``: a dead worker
had received it; or ``Running``: it died before claiming) is sent again ``stuck_s`` after a worker
vanished (if it was only queued, the worker that gets it later refuses it).
Generating again is safe (a stored image is skipped or adopted, charges are keyed: reliability.md),
and not concurrent at claim time: the batch writes ``Superseded`` and then reads the run's states, the
worker writes ``Claimed`` and then reads them; whichever writes second sees the other's write, so
either the worker refuses the run (it ends ``Cancelled``, generating nothing) or the batch sees a live
claim and waits for that run instead of sending the pieces again.

That handshake happens once, when a run starts; a worker unseen for ``grace_s`` after it claimed goes on
generating while its pieces are sent again, and a resume started while a cancelled batch's run still
finishes sends them again too. So a run also claims each of its pieces in ContentForge's database
(``contentforge.db.generation_claims``) before it generates: a piece another run holds with a live lease
is waited for (``await_claimed_pieces``) until it is stored or failed there (skipped here) or its claim
is released or expires (taken over and generated here). The process's ``ClaimKeeper`` renews every
claim every third of ``CONTENTFORGE_GENERATION_CLAIM_S``; the run releases them once its pieces are
stored, and a killed worker's run out on their own. Still not covered (docs/scaling-out.md): a worker
cut off from the database for a whole lease while its generations wait for a slot (its claims expire,
another worker takes the pieces, both generate them; each is still stored once).
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import time
import weakref
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from uuid import UUID

from prefect import get_run_logger, tags, task
from prefect.cache_policies import CachePolicy
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterId
from prefect.client.schemas.objects import StateType, TaskRun
from prefect.client.schemas.sorting import TaskRunSort
from prefect.context import FlowRunContext, SettingsContext, TaskRunContext, get_settings_context
from prefect.exceptions import PrefectHTTPStatusError
from prefect.states import Cancelled, Running, State
from prefect.utilities.asyncutils import run_coro_as_sync
from prefect.utilities.engine import emit_task_run_state_change_event

from contentforge.batch import GENERATED, SKIPPED
from contentforge.db.batch_progress import PieceStatusWatcher
from contentforge.db.generation_claims import Claim, ClaimKeeper, GenerationClaims
from contentforge.domain import PieceStatus
from contentforge.fair_share import DEFAULT_PRIORITY
from tasks import resources
from tasks.bootstrap import create_limit_if_absent
from tasks.generation_queue import BatchStopped, generation_queue
from tasks.image_groups import plan_generation_groups
from tasks.images import generate_image, generate_image_group, record_failure, retry_unless_invalid_input
from tasks.planning import load_piece
from tasks.prefect_clients import api_client, sync_client_context

logger = logging.getLogger(__name__)

CLAIMED = "Claimed"
"""The name of the Running state a worker writes when it starts a run: it names the worker."""
SUPERSEDED = "Superseded"
"""The name of the Cancelled state the batch writes on a run whose pieces it sends again."""
CLAIM_PREFIX = "on GPU worker "
WORKER_GRACE_S = 10.0
"""How long a claiming worker may be missing from the server's live task workers before it counts as
dead: a websocket reconnect takes a few seconds."""
STUCK_S = 20.0
"""How long after a worker vanished a run no worker claimed is sent again."""
CLAIM_WAIT_S = 900.0
"""How long a run waits for pieces another live claimant keeps renewing its claims on, before it fails."""
IMAGED = frozenset(
    status.value
    for status in (PieceStatus.generated, PieceStatus.ready, PieceStatus.needs_review, PieceStatus.rejected)
)
"""Piece statuses that mean its image is recorded (a run skips such a piece while its image is stored)."""
RUN_NAME = "gpu-{piece_ids[0]}-x{n}"
"""A run's name in the UI, from its parameters: a run sent again has the name of the one it replaces."""


def worker_id() -> str:
    """This process as Prefect's task worker names it to the server (``TaskWorker.client_id``)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ModelLoads:
    """How many image backends (models) this process built; a warm worker builds one for its life.

    Each new backend object seen is one load: the factory builds a backend once per process and
    settings, so a second one means the model was loaded again.
    """

    def __init__(self) -> None:
        self.count = 0
        self._seen: list[weakref.ref[Any]] = []
        self._lock = threading.Lock()

    def observe(self, backend: Any) -> int:
        """Count ``backend`` if it is new; returns the loads so far."""
        with self._lock:
            self._seen = [ref for ref in self._seen if ref() is not None]
            if not any(ref() is backend for ref in self._seen):
                self._seen.append(weakref.ref(backend))
                self.count += 1
                logger.info("GPU worker %s: model load %d: %s", worker_id(), self.count, backend.describe())
            return self.count


MODEL_LOADS = ModelLoads()


class NeverCached(CachePolicy):
    """No cache key, so a served run always runs.

    A task worker turns ``NO_CACHE`` into Prefect's default policy (inputs and run id); a run sent again
    must find out from the database what is already stored, not from a cache record on another machine.
    """

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        return None


@task(
    name="generate-pieces-on-gpu-worker",
    task_run_name=RUN_NAME,
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=retry_unless_invalid_input,
    cache_policy=NeverCached(),
    persist_result=True,  # a task worker persists results anyway; without it Prefect drops the policy
    # Parameters and results go through shared storage: JSON, never pickle (the project's rule).
    result_serializer="json",
)
def generate_pieces_on_gpu(
    batch_id: str, piece_ids: list[str], n: int = 0, priority: str = DEFAULT_PRIORITY
) -> dict[str, int] | State[Any]:
    """Generate and store the pieces' images on this warm worker; returns the count of each outcome.

    Each piece that fails on its own is recorded failed; a failure of the run itself (storage down) is
    raised after every other group is stored, so a retry only redoes what is missing. A run the batch
    superseded ends ``Cancelled`` without generating anything. Pieces another run holds a live
    generation claim on are waited for, not generated here, unless their claim ends without an image
    (then they are taken over); each is counted ``skipped`` once its claimant stored or failed it.
    ``n`` names the run.
    """
    context = TaskRunContext.get()
    if context is not None:
        if not claim_run(context.task_run.id):
            return Cancelled(
                name=SUPERSEDED, message="superseded: its pieces were sent again, not generated here"
            )
        name_run_soon(context.task_run.id, RUN_NAME.format(piece_ids=piece_ids, n=n))
    MODEL_LOADS.observe(resources.image_backend())
    run_logger = get_run_logger()
    run_name = context.task_run.name if context is not None else "-"
    keeper = claim_keeper()
    claim = keeper.claim(f"GPU worker {worker_id()}, run {run_name}", piece_ids)
    outcomes: list[str] = []
    errors: list[BaseException] = []
    try:
        todo = [piece_id for piece_id in piece_ids if piece_id in claim.held]
        waiting = [piece_id for piece_id in piece_ids if piece_id not in claim.held]
        while todo or waiting:
            if todo:
                done, failed = _generate_and_store(batch_id, todo, priority)
                outcomes += done
                errors += failed
            todo, waiting, settled = await_claimed_pieces(keeper, claim, waiting, batch_id, run_logger)
            outcomes += [SKIPPED.status] * settled
    finally:
        keeper.release(claim)
    for error in errors[1:]:
        run_logger.warning("batch %s: %s: %s", batch_id, type(error).__name__, error)
    if errors:
        raise errors[0]
    return dict(Counter(outcomes))


def _generate_and_store(
    batch_id: str, piece_ids: list[str], priority: str
) -> tuple[list[str], list[BaseException]]:
    """Plan the pieces' image groups, queue them in this worker's slots and store each when done."""
    groups, grouped = plan_generation_groups(piece_ids)
    queue = generation_queue()
    # Queued first, so the worker's slots start on this run's groups while their stores are set up.
    queued = queue.queue(groups, grouped=grouped, priority=priority, share=batch_id)
    try:
        return _store_groups(groups, grouped, priority)
    finally:
        queue.discard(queued)


def await_claimed_pieces(
    keeper: ClaimKeeper,
    claim: Claim,
    pieces: list[str],
    batch_id: str,
    log: Any = logger,
    *,
    poll_s: float | None = None,
    max_wait_s: float | None = None,
) -> tuple[list[str], list[str], int]:
    """Wait for pieces another claimant generates: ``(taken over, still waiting, settled)``.

    Returns as soon as some piece's claim was released or expired without the piece being made (taken
    over here, to generate now) or every piece is settled: stored, adopted from storage or failed by
    its claimant (``settled`` counts them; nothing is generated for them here). ``BatchStopped`` if the
    batch is stopped in this process meanwhile; ``PiecesClaimedElsewhere`` after ``max_wait_s`` (a
    claimant that renews its claims but never finishes).
    """
    if not pieces:
        return [], [], 0
    poll = poll_s if poll_s is not None else min(1.0, keeper.lease_s / 10)
    deadline = time.monotonic() + (max_wait_s if max_wait_s is not None else CLAIM_WAIT_S)
    settled = 0
    waiting = list(pieces)
    logged = False
    while True:
        open_pieces = [piece_id for piece_id in waiting if _still_to_make(piece_id)]
        settled += len(waiting) - len(open_pieces)
        waiting = open_pieces
        if not waiting:
            return [], [], settled
        taken = keeper.take(claim, waiting)
        if taken:
            log.info("batch %s: %d pieces taken over from an ended or silent claimant", batch_id, len(taken))
            return taken, [piece_id for piece_id in waiting if piece_id not in taken], settled
        if not logged:
            holders = keeper.claims.holders(waiting)
            log.info(
                "batch %s: %d pieces are generated by %s; waiting for them",
                batch_id,
                len(waiting),
                sorted({holder.owner for holder in holders.values()}),
            )
            logged = True
        if generation_queue().stopped(batch_id):
            raise BatchStopped(f"batch {batch_id} was stopped")
        if time.monotonic() > deadline:
            holders = keeper.claims.holders(waiting)
            raise PiecesClaimedElsewhere(
                f"{len(waiting)} pieces still generated by {sorted({h.owner for h in holders.values()})}"
            )
        time.sleep(poll)


def _still_to_make(piece_id: str) -> bool:
    """Whether the piece is still planned: its claimant has not recorded its image nor its failure.

    An image stored but not yet recorded is not adopted from here: its live claimant is recording it.
    Once its claim ends, the piece is taken over and the usual path adopts it (``already_generated``).
    """
    return load_piece(piece_id).status is PieceStatus.planned


class PiecesClaimedElsewhere(RuntimeError):
    """Another claimant renewed its claims on this run's pieces for ``CLAIM_WAIT_S`` without making them."""


_KEEPER: ClaimKeeper | None = None
_KEEPER_LOCK = threading.Lock()


def claim_keeper() -> ClaimKeeper:
    """This process's keeper of generation claims, on the configured database (rebuilt when it changes)."""
    global _KEEPER
    sessions, lease_s = resources.repository().sessions, resources.settings().generation_claim_s
    with _KEEPER_LOCK:
        keeper = _KEEPER
        if keeper is None or keeper.claims.sessions is not sessions or keeper.lease_s != lease_s:
            keeper = _KEEPER = ClaimKeeper(GenerationClaims(sessions), lease_s)
        return keeper


def _store_groups(
    groups: list[list[str]], grouped: bool, priority: str
) -> tuple[list[str], list[BaseException]]:
    """Run each group's store (``tasks/images.py``'s task bodies) in its own thread, in this run's context."""
    outcomes: list[str] = []
    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(groups))), thread_name_prefix="gpu-group") as pool:
        futures: list[Future[Any]] = []
        for ids in groups:
            work = partial(_store_group, ids, grouped, priority)
            futures.append(pool.submit(contextvars.copy_context().run, work))
        for future in futures:
            try:
                result = future.result()
            except BaseException as exc:  # the others still finish and are stored
                errors.append(exc)
                continue
            if isinstance(result, dict):  # an image group: each piece's outcome
                outcomes += [outcome.status for outcome in result.values()]
            else:  # a lone piece: what it stored, or None when it already had its image
                outcomes.append(GENERATED.status if result is not None else SKIPPED.status)
    return outcomes, errors


def _store_group(ids: list[str], grouped: bool, priority: str) -> Any:
    """One group's generation (claimed from the queue) and store: the body of its ``tasks/images.py`` task."""
    if grouped:
        return generate_image_group.fn(ids, n=len(ids), priority=priority)
    return generate_image.fn(ids[0], priority=priority)


def claim_run(task_run_id: UUID) -> bool:
    """Name this worker in the run's state; False (refuse the run) if the batch has superseded it.

    Forced: an orchestrated Running → Running transition would be renamed ``Rerunning``, losing the name.
    The run's name is written afterwards, off the way to its first generation (``name_run_soon``).
    """
    with api_client(sync_client=True) as client:
        client.set_task_run_state(
            task_run_id, Running(name=CLAIMED, message=CLAIM_PREFIX + worker_id()), force=True
        )
        return not any(state.name == SUPERSEDED for state in client.read_task_run_states(task_run_id))


def name_run_soon(task_run_id: UUID, name: str) -> None:
    """Write the run's name again, in the background, once this worker has claimed it.

    The batch named the run when it created it (``GpuWorkFollower._submit``), but the server records a
    task run from its events as well: this worker's ``Pending`` event carries the run as the worker
    received it, before that naming, and the engine's ``Running`` event (with the name resolved from
    ``RUN_NAME``) is dropped once the claim's state is newer. Recorded in that order, the run kept
    Prefect's creation name in the UI (``generate-pieces-on-gpu-worker-<key>``; seen in a test). Written
    after the claim, the name stays: an event recorded later is older than the claim and is dropped.
    """

    def write() -> None:
        try:
            with api_client(sync_client=True) as client:
                client.set_task_run_name(task_run_id, name)
        except Exception as exc:  # only the UI's name is at stake
            logger.info("naming run %s %r failed: %s", task_run_id, name, exc)

    # A daemon thread: a rename still waiting for an unreachable server never holds up the worker's exit.
    threading.Thread(
        target=contextvars.copy_context().run, args=(write,), name="gpu-run-name", daemon=True
    ).start()


def claimed_by(state: State[Any] | None) -> str | None:
    """The worker a ``Claimed`` state names, else None."""
    if state is None or state.name != CLAIMED or not (state.message or "").startswith(CLAIM_PREFIX):
        return None
    return (state.message or "").removeprefix(CLAIM_PREFIX)


def live_workers(client: SyncPrefectClient) -> set[str]:
    """The task workers connected to the server now that serve ``generate_pieces_on_gpu``."""
    response = client.request(
        "POST",
        "/task_workers/filter",
        json={"task_worker_filter": {"task_keys": [generate_pieces_on_gpu.task_key]}},
    )
    response.raise_for_status()
    return {worker["identifier"] for worker in response.json()}


@dataclass
class _Chunk:
    """Pieces sent together, and the run that generates them now."""

    pieces: list[str]
    run_id: UUID
    submitted_at: float
    attempts: int = 1
    owner: str | None = None
    contested: bool = False
    """A live worker claimed the run as the batch superseded it: that run finishes or refuses."""
    missing_reads: int = 0
    """Consecutive answers from the server that did not list the run: two, and it is sent again."""
    imaged: bool = False
    """Every piece has its image recorded in ContentForge's database: nothing is left to follow."""


class _RunVanished(Exception):
    """The server answered 404 for a run it had just created."""


@dataclass
class GpuWorkFollower:
    """Sends a batch's pieces to the warm GPU workers and follows their runs until each has ended or
    recorded every image of its pieces."""

    batch_id: str
    priority: str = DEFAULT_PRIORITY
    chunk_pieces: int = 8
    poll_s: float = 1.0
    pieces_poll_s: float = 0.25
    """How often the batch's pieces are read between two reads of the runs (a cheap read: counts)."""
    grace_s: float = WORKER_GRACE_S
    stuck_s: float = STUCK_S
    max_attempts: int = 3
    no_worker_warning_s: float = 60.0
    log: Any = field(default=logger)
    chunks: list[_Chunk] = field(default_factory=list)
    outcome: Counter[str] = field(default_factory=Counter)
    _missing_since: dict[str, float] = field(default_factory=dict)
    _known: set[str] = field(default_factory=set)
    _vanished_at: float | None = None
    _workers_seen_at: float = field(default_factory=time.monotonic)
    _workers_read_at: float | None = None
    """When the live workers were last read: nobody is judged dead on an old (or no) reading."""
    _states: dict[UUID, State[Any] | None] = field(default_factory=dict)

    def submit_all(self, piece_ids: list[str]) -> None:
        size = max(1, self.chunk_pieces)
        for start in range(0, len(piece_ids), size):
            pieces = piece_ids[start : start + size]
            self.chunks.append(_Chunk(pieces, self._submit(pieces), time.monotonic()))

    def _submit(self, pieces: list[str]) -> UUID:
        """One background run of the pieces, a child of this flow run; what ``.delay`` does, but leaner.

        ``.delay`` stores the submitter's whole run context with the parameters, and that pickles the
        batch flow and its GPU-stage task by module: a worker cannot load a flow that its deployment
        loaded from a file path ("No module named 'produce_content_batch'"). So the run is created from
        a fresh context that carries only the settings and the batch's tags, with the flow run and the
        parent task named explicitly: the UI shows the same parent, tags and name.

        Every send is a run of its own, so a superseded run stays in the UI next to the one sent in
        its place. The server keys a flow run's task runs on (task, dynamic key) and hands back the
        existing run for a key it has seen (``models.task_runs.create_task_run``); the key Prefect
        counts per flow-run context restarts at 0 in a new attempt of the same flow run, so the sends
        go out with a detached copy of the context, for which Prefect draws a random key. The run is
        named by its pieces at once (``RUN_NAME``): a run no worker ever starts (a dead worker had
        received it) would otherwise keep Prefect's creation name.
        """
        parameters = {
            "batch_id": self.batch_id,
            "piece_ids": pieces,
            "n": len(pieces),
            "priority": self.priority,
        }
        flow_context, task_context = FlowRunContext.get(), TaskRunContext.get()
        if flow_context is not None:
            flow_context = flow_context.model_copy(update={"detached": True})
        settings = get_settings_context()

        def create() -> TaskRun:
            with (
                SettingsContext(profile=settings.profile, settings=settings.settings),
                tags("contentforge", "gpu", f"batch:{self.batch_id}"),
            ):
                created: TaskRun = run_coro_as_sync(
                    generate_pieces_on_gpu.create_run(
                        client=api_client(),  # Prefect's own would build a TLS context of its own
                        parameters=parameters,
                        flow_run_context=flow_context,
                        parent_task_run_context=task_context,
                        deferred=True,
                    )
                )
                created.name = RUN_NAME.format(**parameters)
                with api_client(sync_client=True) as client:
                    try:
                        client.set_task_run_name(created.id, created.name)
                    except PrefectHTTPStatusError as exc:
                        if exc.response.status_code != 404:
                            raise
                        raise _RunVanished(str(created.id)) from exc
                return created

        for attempt in range(1, self.max_attempts + 1):
            try:
                task_run = contextvars.Context().run(create)
                break
            except _RunVanished as vanished:
                # Seen once in a benchmark run (the server answered 404 for a run it had just created;
                # cause not found): a run that no longer exists is never worked on, so create another.
                self.log.warning(
                    "batch %s: run %s was gone right after its creation (attempt %d of %d)",
                    self.batch_id,
                    vanished,
                    attempt,
                    self.max_attempts,
                )
                if attempt == self.max_attempts:
                    raise RuntimeError(
                        f"the server lost {attempt} runs of batch {self.batch_id} in a row"
                    ) from None
        if task_run.state is not None:  # the Scheduled event .delay emits too
            emit_task_run_state_change_event(
                task_run=task_run, initial_state=None, validated_state=task_run.state
            )
        return task_run.id

    def follow(self) -> Counter[str]:
        """Poll until every run ended or stored all its images; ``BatchStopped`` (its runs cancelled)
        once the batch stops here."""
        with api_client(sync_client=True) as client:
            try:
                watcher = PieceStatusWatcher(resources.repository().sessions, self.batch_id)
                open_chunks = [chunk for chunk in self.chunks if not chunk.imaged]
                while open_chunks:
                    open_chunks = [chunk for chunk in open_chunks if not self._step_safely(client, chunk)]
                    if open_chunks:
                        self._observe_workers(client)
                        open_chunks = self._await_poll(watcher, open_chunks)
                        self._refresh(client, open_chunks)
            except BaseException:
                self.cancel_open(client, f"batch {self.batch_id} stopped")
                raise
        return self.outcome

    def _await_poll(self, watcher: PieceStatusWatcher, chunks: list[_Chunk]) -> list[_Chunk]:
        """Wait ``poll_s`` for the next read of the runs; returns the chunks still open then.

        Why not only the runs' states: Prefect records a task run's states from the events its worker
        sends, and under load the server recorded a run's ``Completed`` 1.5-6.5 s after the worker sent it
        (docs/benchmarks.md), all of it added to the batch. ContentForge's own database says at once when a
        piece's image is recorded, so a chunk whose every piece has its image is done here without
        waiting for its run's state (the run ends on its worker, as the UI shows moments later). A chunk
        with a failed piece still waits for its run's end: a retry of the run may yet generate it. So
        does a chunk sent again (or whose run a live worker claimed as the batch superseded it): another
        run may still generate its pieces, and it records them even where the first claimant's images
        are already recorded (a claimant cut off from the database past its lease, docs/scaling-out.md).
        """
        deadline = time.monotonic() + self.poll_s
        while True:
            if generation_queue().stopped(self.batch_id):
                raise BatchStopped(f"batch {self.batch_id} was stopped")
            try:
                statuses = watcher.poll()
            except Exception as exc:  # the database is busy: the runs' states still tell
                self.log.info("reading the pieces of batch %s failed: %s", self.batch_id, exc)
                statuses = {}
            imaged = [
                chunk
                for chunk in chunks
                if not chunk.imaged
                and chunk.attempts == 1
                and not chunk.contested
                and all(statuses.get(piece) in IMAGED for piece in chunk.pieces)
            ]
            for chunk in imaged:
                chunk.imaged = True
                self.outcome["runs with every image stored"] += 1
            chunks = [chunk for chunk in chunks if not chunk.imaged]
            left = deadline - time.monotonic()
            if not chunks or left <= 0:
                return chunks
            time.sleep(min(self.pieces_poll_s, left))

    # --- one poll ---------------------------------------------------------------------------------

    def _refresh(self, client: SyncPrefectClient, chunks: list[_Chunk]) -> None:
        """Read the current state of every open run in one call; on a failed read, the last one stands."""
        ids = [chunk.run_id for chunk in chunks]
        try:
            runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(id=TaskRunFilterId(any_=ids)),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC,
                limit=len(ids),
            )
        except Exception as exc:  # the server is busy or restarting: the next poll reads again
            self.log.info("reading the GPU runs of batch %s failed: %s", self.batch_id, exc)
            return
        self._states = {run.id: run.state for run in runs}
        for chunk in chunks:
            chunk.missing_reads = 0 if chunk.run_id in self._states else chunk.missing_reads + 1

    def _observe_workers(self, client: SyncPrefectClient) -> None:
        """Note which workers are live, when one vanished, and warn while none serves the batch."""
        try:
            live = live_workers(client)
        except Exception as exc:  # the next poll asks again; nobody is declared dead meanwhile
            self.log.info("reading the live GPU workers failed: %s", exc)
            return
        now = time.monotonic()
        self._workers_read_at = now
        if self._known - live:
            self._vanished_at = now
        self._known = live
        for worker in list(self._missing_since):
            if worker in live:
                del self._missing_since[worker]
        if live:
            self._workers_seen_at = now
        elif now - self._workers_seen_at >= self.no_worker_warning_s:
            self.log.warning(
                "batch %s: no GPU worker serves its pieces; start one with `contentforge gpu-worker`",
                self.batch_id,
            )
            self._workers_seen_at = now

    def _dead(self, worker: str) -> bool:
        """Whether ``worker`` has been missing from the live task workers for ``grace_s`` (fresh readings)."""
        read_at = self._workers_read_at
        if worker in self._known or read_at is None or time.monotonic() - read_at > 3 * self.poll_s + 1:
            return False
        since = self._missing_since.setdefault(worker, time.monotonic())
        return time.monotonic() - since >= self.grace_s

    def _step_safely(self, client: SyncPrefectClient, chunk: _Chunk) -> bool:
        """``_step``, where a failed call to the server is tried again at the next poll."""
        try:
            return self._step(client, chunk)
        except Exception as exc:
            self.log.warning("batch %s: following run %s failed: %s", self.batch_id, chunk.run_id, exc)
            return False

    def _step(self, client: SyncPrefectClient, chunk: _Chunk) -> bool:
        """Act on one run's state; True once its pieces are done with (stored, failed or cancelled)."""
        state = self._states.get(chunk.run_id)
        if state is None:
            if chunk.missing_reads >= 2:  # deleted (by hand, or by a task worker that could not start it)
                return self._send_again(client, chunk, "the server no longer has its run")
            return False
        chunk.owner = claimed_by(state) or chunk.owner
        if state.is_completed():
            self.outcome["runs completed"] += 1
            return True
        if state.is_final():
            if state.name == SUPERSEDED and not chunk.contested:  # written here; the claims not read yet
                return self._send_unless_claimed(client, chunk, state.message or SUPERSEDED)
            if chunk.contested or state.type is StateType.CRASHED:
                return self._send_again(client, chunk, f"its run ended {state.name}")
            if state.type is StateType.CANCELLED:  # cancelled from outside: the pieces stay planned
                return True
            self._record_failed(chunk, state.message or state.name or "failed")
            return True
        if chunk.contested:
            return False
        if chunk.owner is not None and self._dead(chunk.owner):
            return self._supersede(client, chunk, f"GPU worker {chunk.owner} stopped")
        vanished = self._vanished_at
        if (
            chunk.owner is None
            and vanished is not None
            and vanished > chunk.submitted_at
            and time.monotonic() - vanished >= self.stuck_s
        ):
            # Still Scheduled (a dead worker had received it) or Running without a claim (it died between
            # Prefect's Running and its Claimed): if a live worker has it after all, the claims say so.
            return self._supersede(client, chunk, "a GPU worker stopped before this run named its worker")
        return False

    # --- sending again ------------------------------------------------------------------------------

    def _supersede(self, client: SyncPrefectClient, chunk: _Chunk, reason: str) -> bool:
        """Mark the run superseded; send its pieces again unless a live worker claimed it meanwhile.

        Named again after: a dead worker's ``Pending`` event may have given the run back Prefect's
        creation name (``name_run_soon``), and the superseded run stays in the UI beside its successor.
        """
        client.set_task_run_state(
            chunk.run_id,
            Cancelled(name=SUPERSEDED, message=f"{reason}: its pieces are sent again"),
            force=True,
        )
        try:
            client.set_task_run_name(
                chunk.run_id, RUN_NAME.format(piece_ids=chunk.pieces, n=len(chunk.pieces))
            )
        except Exception as exc:  # only the UI's name is at stake
            self.log.info("naming run %s failed: %s", chunk.run_id, exc)
        return self._send_unless_claimed(client, chunk, reason)

    def _send_unless_claimed(self, client: SyncPrefectClient, chunk: _Chunk, reason: str) -> bool:
        """After ``Superseded`` was written: send the pieces again unless a live worker claimed the run."""
        claims = {claimed_by(s) for s in client.read_task_run_states(chunk.run_id)} - {None}
        live_claims = {worker for worker in claims if worker is not None and not self._dead(worker)}
        if live_claims:
            # That worker claimed it before it could see the supersession: it generates or refuses; the
            # run's end says which, and only a refusal sends the pieces again.
            chunk.contested = True
            self.log.warning("batch %s: run %s is %s's after all", self.batch_id, chunk.run_id, live_claims)
            return False
        return self._send_again(client, chunk, reason)

    def _send_again(self, client: SyncPrefectClient, chunk: _Chunk, reason: str) -> bool:
        if chunk.attempts >= self.max_attempts:
            self._record_failed(chunk, f"GPU workers failed {chunk.attempts} times ({reason})")
            return True
        previous = chunk.run_id
        chunk.attempts += 1  # before sending: a send that fails still counts, so retries end
        chunk.run_id = self._submit(chunk.pieces)
        chunk.owner, chunk.contested, chunk.submitted_at = None, False, time.monotonic()
        chunk.missing_reads = 0
        self._states.pop(previous, None)
        self.log.warning(
            "batch %s: %s; %d pieces sent again as run %s (was %s)",
            self.batch_id,
            reason,
            len(chunk.pieces),
            chunk.run_id,
            previous,
        )
        return False

    def _record_failed(self, chunk: _Chunk, message: str) -> None:
        """Record the chunk's pieces still without an image as failed with the run's error."""
        planned = {
            row.id
            for row in resources.repository().pieces(batch_id=self.batch_id)
            if row.id in chunk.pieces and row.status is PieceStatus.planned
        }
        for piece_id in sorted(planned):
            record_failure(piece_id, RuntimeError(message), self.log)
            self.outcome["failed"] += 1

    def cancel_open(self, client: SyncPrefectClient, message: str) -> None:
        """Cancel every run not yet ended (a stopped batch); what a worker already generates is stored."""
        for chunk in self.chunks:
            state = self._states.get(chunk.run_id)
            if chunk.imaged or (state is not None and state.is_final()):
                continue
            try:
                client.set_task_run_state(chunk.run_id, Cancelled(message=message), force=True)
            except Exception as exc:  # the run then finishes on its worker; its pieces are kept
                self.log.warning("cancelling run %s failed: %s", chunk.run_id, exc)


def run_on_gpu_workers(batch_id: str, piece_ids: list[str], priority: str = DEFAULT_PRIORITY) -> Counter[str]:
    """The batch's GPU stage on the warm GPU workers: send the pieces, follow the runs until each ended
    or recorded every image of its pieces.

    Returns how many runs completed (or recorded every image) and how many pieces it recorded failed
    (the pieces themselves are counted from the database: a run's result stays on its worker, never
    read back here). ``BatchStopped`` once the batch is stopped in this process (its run is
    cancelling); its runs are then cancelled.
    """
    follower = GpuWorkFollower(
        batch_id,
        priority,
        chunk_pieces=resources.settings().gpu_task_pieces,
        grace_s=WORKER_GRACE_S,
        stuck_s=STUCK_S,
        log=get_run_logger(),
    )
    try:
        follower.submit_all(piece_ids)
    except BaseException:  # the runs already sent would otherwise go on, followed by nobody
        with api_client(sync_client=True) as client:
            follower.cancel_open(client, f"batch {batch_id} could not send all its pieces")
        raise
    return follower.follow()


def serve_gpu_worker(runs: int | None = None) -> None:
    """Run this process as a warm GPU worker until it is stopped (SIGTERM, Ctrl-C).

    The model loads once, here, before the first run arrives; then Prefect's task worker serves
    ``generate_pieces_on_gpu``. ``runs``: how many runs it takes at once (default twice the slots this
    process may hold, so the next run's groups already wait in its queue while one finishes; a worker
    never takes runs it could only queue behind many others, which another worker could start now).
    """
    from prefect.task_worker import serve

    config = resources.settings()
    create_limit_if_absent(config.concurrency_limit_name, config.generation_slots)
    resources.repository()  # migrated before the first run, not during it
    backend = resources.image_backend()
    warm_up = getattr(backend, "warm_up", None)
    if callable(warm_up):
        warm_up()
    MODEL_LOADS.observe(backend)
    runs = runs or 2 * resources.dispatcher().max_slots
    logger.info("GPU worker %s: serving %s, %d runs at once", worker_id(), backend.name, runs)
    with sync_client_context():  # each run's engine would otherwise build two clients of its own
        serve(generate_pieces_on_gpu, limit=runs)


def wait_for_workers(count: int, timeout_s: float = 120.0) -> set[str]:
    """Wait until ``count`` GPU workers are connected to the server; returns their names."""
    deadline = time.monotonic() + timeout_s
    with api_client(sync_client=True) as client:
        while True:
            live = live_workers(client)
            if len(live) >= count:
                return live
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(live)} of {count} GPU workers connected after {timeout_s:.0f} s")
            time.sleep(0.5)
