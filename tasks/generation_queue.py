"""Generations queued ahead of their tasks: ``GenerationQueue`` owns queue → claim → discard.

Why: a task run costs several API round trips before its body starts; when generations only
reached the slot dispatcher from inside their task, several batches fed it slower than slots freed
up (figures: docs/benchmarks.md). So the GPU stage queues every generation first and only then
submits the tasks, and a generation waits only for a slot.

One run of the GPU stage (``flows/generate_images.py``; the batch flow's ``queue_ahead`` does the
first step before the stage's subflow run exists)::

    GPU stage flow              GenerationQueue                SlotDispatcher          task run
    --------------              ---------------                --------------          --------
    plan image groups
    queue(groups) ───────────►  per group: skip pieces with
                                an image (stored, or adopted
                                from a crashed run); then
                                submit(work) ────────────────► waits for a slot,
                                                               runs the generation
    submit one task per group ─────────────────────────────────────────────────────►  starts
                                claim_or_run(key) ◄──────────────────────────────────  claims
                                  queued: pop, wait ◄──────── result or exception
                                  none (a retry, a lone
                                  task): run(work) now ──────► runs in a slot
                                  ─────────────────────────────────────────────────►  stores, records
    finally: discard(keys) ──►  unclaimed and not started:
                                cancelled; already running:
                                charged when it ends (its
                                image is not kept)
    crashed/cancelled hook ──►  discard_pieces(the run's piece ids)
    run seen Cancelling ─────►  stop(batch id): its waiting
    (stop_when_cancelled)       generations cancelled, its
                                slots given back, any later
                                queue/claim refused

A queued generation is claimed once: if it failed, its exception is raised in the claiming task,
whose retry finds nothing queued and generates afresh. Queueing is only a head start: a group that
cannot be prepared here is left for its task, which meets the same problem and reports it.

Every generation carries its batch's priority (``high`` | ``normal`` | ``low``) and its batch id as its
share: the dispatcher runs the most urgent first and shares slots evenly between batches, in this
process and, through the demand table in the database, with every other generating process
(``tasks/dispatch.py`` says how).

Stopping a batch (issue 14): when a batch run is cancelled, its process must stop generating at once.
Prefect's SIGTERM unwinds the flow body but then waits for running tasks, and the in-process GPU
stage's task ran on to the batch's last image (a discarded generation's task simply generates afresh),
so a cancel took 36-56 s. So the batch flow ``stop``s the batch as its body unwinds, and the batch flow
and the GPU stage each also watch their own run (``stop_when_cancelled``, one API read a second), for a
signal that comes late or never. Once stopped, nothing of the batch waits for a slot any more, and
``queue`` and ``claim_or_run`` refuse it (``BatchStopped``). A generation already running finishes and
its task still stores it: it was paid for, and the resume keeps it.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar, cast

from prefect import get_run_logger
from prefect.client.schemas.objects import StateType
from prefect.context import SettingsContext, get_settings_context
from prefect.exceptions import MissingContextError

from contentforge.batch import (
    TimedImage,
    adopt_stored_image,
    charge_generation,
    generate_piece,
    generate_piece_group,
)
from contentforge.db import PieceRow
from contentforge.db.slot_offers import SlotOffers
from contentforge.db.turns import DemandTable
from contentforge.domain import Persona, PieceStatus
from contentforge.errors import InvalidInput
from contentforge.fair_share import DEFAULT_PRIORITY
from contentforge.storage import content_key
from tasks import resources
from tasks.dispatch import SlotDispatcher
from tasks.planning import load_piece
from tasks.prefect_clients import api_client

T = TypeVar("T")
GroupKey = tuple[str, ...]
"""The ids of the pieces one queued generation makes, in order."""
logger = logging.getLogger(__name__)


class BatchStopped(Exception):
    """The batch was cancelled: none of its generations is started any more in this process."""


@dataclass(frozen=True)
class QueuedGeneration:
    future: Future[Any]
    queued_at: datetime
    pieces: tuple[PieceRow, ...]


class GenerationQueue:
    """Generations submitted to the slot dispatcher before their tasks run, until claimed or discarded."""

    def __init__(self) -> None:
        self._queued: dict[GroupKey, QueuedGeneration] = {}
        self._stopped: set[str] = set()
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._queued

    def queue(
        self,
        groups: Sequence[Sequence[str]],
        *,
        grouped: bool,
        priority: str = DEFAULT_PRIORITY,
        share: str = "",
    ) -> list[GroupKey]:
        """Queue the generation of every group of piece ids in the slot dispatcher, before any task runs.

        ``grouped``: each group is an image group generated in one pipeline call (else a lone piece).
        ``priority`` and ``share`` (the batch id; default: each piece's batch) decide its turn.
        Returns the keys of what was queued; ``discard`` them when the stage ends. Pieces already
        generated, and pieces whose persona is gone, are left to their task (which skips or reports them).
        """
        dispatcher = generation_dispatcher()
        keys: list[GroupKey] = []
        for ids in groups:
            try:
                todo = [piece for piece in map(load_piece, ids) if not already_generated(piece)]
                personas = personas_of(todo)
            except Exception as exc:  # the task meets the same problem and reports it on the piece
                logger.info("not queueing %s ahead of its task: %s", list(ids), exc)
                continue
            if not todo:
                continue
            key = tuple(piece.id for piece in todo)
            with self._lock:
                if todo[0].batch_id in self._stopped:
                    break  # the batch was cancelled: its tasks are refused too
                if key in self._queued:  # a rerun of the stage in this process: its tasks claim that one
                    continue
                work = group_work(todo, personas) if grouped else image_work(todo[0], personas)
                future = dispatcher.submit(work, priority=priority, share=share or todo[0].batch_id)
                self._queued[key] = QueuedGeneration(future, datetime.now(UTC), tuple(todo))
            keys.append(key)
        return keys

    def claim_or_run(
        self, key: GroupKey, work: Callable[[], T], *, priority: str = DEFAULT_PRIORITY, share: str = ""
    ) -> tuple[T, datetime]:
        """The result of the generation queued for ``key``, or of ``work`` run in a slot now; and when queued.

        A queued generation is claimed once: if it failed, its exception is raised here and the task's
        retry finds nothing queued, so it generates afresh. ``BatchStopped`` if the batch (``share``) was
        stopped before its generation started; one that was already running is returned and stored.
        """
        with self._lock:
            queued = self._queued.pop(key, None)
            if queued is None and share in self._stopped:
                raise BatchStopped(f"batch {share} was stopped: {list(key)} not generated")
        try:
            if queued is not None:
                return cast(T, queued.future.result()), queued.queued_at
            queued_at = datetime.now(UTC)
            future = generation_dispatcher().submit(work, priority=priority, share=share or "-")
            return future.result(), queued_at
        except CancelledError:  # ``stop`` cancelled it while it waited for a slot
            raise BatchStopped(f"batch {share} was stopped: {list(key)} not generated") from None

    def stop(self, batch_id: str) -> int:
        """Stop the batch in this process: cancel its generations waiting for a slot, refuse any later one.

        Returns how many waiting generations were cancelled. Holders left without work give their slots
        back within the dispatcher's ``linger_s``. A generation already running finishes and stays
        claimable, so its task stores it. ``resume`` lifts the stop (a resume of the batch in this process).
        """
        with self._lock:
            self._stopped.add(batch_id)
        cancelled = generation_dispatcher().cancel_share(batch_id)
        with self._lock:  # forget what was cancelled; what runs stays here for its task to claim
            for key in [key for key, queued in self._queued.items() if queued.future.cancelled()]:
                del self._queued[key]
        return cancelled

    def resume(self, batch_id: str) -> None:
        """Let the batch generate again in this process (a new run of a stopped batch)."""
        with self._lock:
            self._stopped.discard(batch_id)

    def stopped(self, batch_id: str) -> bool:
        """Whether ``stop`` was called for the batch (and no ``resume`` since)."""
        with self._lock:
            return batch_id in self._stopped

    def discard(self, keys: Iterable[GroupKey]) -> int:
        """Forget queued generations no task claimed, cancelling those no slot has started; returns how many.

        One that already started cannot be cancelled: it runs to its end and is charged then, because a
        generation that ran was paid for even though nobody keeps its image.
        """
        dropped = 0
        with self._lock:
            for key in keys:
                queued = self._queued.pop(key, None)
                if queued is not None:
                    if not queued.future.cancel():
                        queued.future.add_done_callback(partial(_charge_discarded, queued.pieces))
                    dropped += 1
        return dropped

    def discard_pieces(self, piece_ids: Iterable[str]) -> int:
        """``discard`` every queued generation made only of these pieces (a crashed or cancelled stage's)."""
        pieces = set(piece_ids)
        with self._lock:
            keys = [key for key in self._queued if pieces.issuperset(key)]
        return self.discard(keys)


_QUEUE = GenerationQueue()


def generation_queue() -> GenerationQueue:
    """The process-wide queue: the batch flow queues ahead into it and the GPU stage's tasks claim from it."""
    return _QUEUE


STOPPING_STATES = frozenset({StateType.CANCELLING, StateType.CANCELLED})


@contextmanager
def stop_when_cancelled(
    flow_run_id: Any, batch_id: str, *, new_run: bool = False, interval_s: float = 1.0
) -> Iterator[threading.Event]:
    """Watch the flow run's state while the block runs; once it is Cancelling, ``stop`` the batch here.

    Yields an event set at that moment, for the flow body to stop waiting and end. Why a watcher: the
    worker's SIGTERM, which also stops the batch, may come late (or, run without a worker, never), and
    the process would generate until then. One cheap read of the run per ``interval_s``; a read that
    fails is tried again at the next tick. Without a flow run (a bare call) it watches nothing.
    ``new_run``: the batch's run starts here, so an earlier stop of it in this process is lifted (the GPU
    stage, part of that run, passes False so it never undoes its batch's stop).
    """
    stopped, done = threading.Event(), threading.Event()
    if new_run:
        generation_queue().resume(batch_id)
    run_logger = _run_logger()  # bound to the run here: the watcher's thread has no run context

    def watch() -> None:
        # Its own client, not the run's: a client shared with the engine's threads was seen to stall it.
        with api_client(sync_client=True) as client:
            while not done.wait(interval_s):
                try:
                    state = client.read_flow_run(flow_run_id).state
                except Exception as exc:  # the server is busy or restarting: the next tick asks again
                    logger.info("reading flow run %s failed: %s", flow_run_id, exc)
                    continue
                if state is not None and state.type in STOPPING_STATES:
                    dropped = generation_queue().stop(batch_id)
                    stopped.set()
                    run_logger.warning(
                        "flow run %s is %s: batch %s stopped, %d waiting generation(s) cancelled",
                        flow_run_id,
                        state.name,
                        batch_id,
                        dropped,
                    )
                    return

    if flow_run_id:
        _start_watcher(watch, f"cancel-watch-{batch_id[:8]}")
    try:
        yield stopped
    finally:
        done.set()


def _start_watcher(target: Callable[[], None], name: str) -> None:
    """Run ``target`` in a daemon thread under this thread's Prefect settings but outside its run context.

    Prefect's settings (the API URL) travel in context variables, which a new thread does not inherit;
    the run's own context (its client, its task run) is left behind on purpose.
    """
    settings = get_settings_context()

    def run() -> None:
        with SettingsContext(profile=settings.profile, settings=settings.settings):
            try:
                target()
            except Exception:  # never silently: a dead watcher means a cancel is not seen early
                logger.exception("the cancel watcher %s stopped", name)

    threading.Thread(target=contextvars.Context().run, args=(run,), name=name, daemon=True).start()


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The current run's logger (its lines reach the Prefect UI), or this module's outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def generation_dispatcher() -> SlotDispatcher:
    """The process's ``image-generation`` dispatcher, sharing the slots with other processes through the
    demand table of the configured database (attached on first use)."""
    dispatcher, sessions = resources.dispatcher(), resources.repository().sessions
    table = dispatcher.demand_table
    if table is None or table.sessions is not sessions:  # first use, or the database was reconfigured
        config = resources.settings()
        dispatcher.limit_size = config.generation_slots
        dispatcher.demand_table = DemandTable(sessions, config.concurrency_limit_name)
        dispatcher.offers = SlotOffers(sessions, config.concurrency_limit_name)
    return dispatcher


def already_generated(piece: PieceRow) -> bool:
    """Whether the piece's image exists: recorded, or stored by a run that died before recording it.

    The second case adopts the stored image (``adopt_stored_image``), so a crash between storing and
    recording never makes a resume generate (and pay for) the same image again.
    """
    storage = resources.storage()
    if piece.status is not PieceStatus.planned:
        return bool(piece.storage_key and storage.exists(piece.storage_key))
    if not storage.exists(content_key(piece.persona_id, piece.id, "png")):
        return False  # the usual case: nothing was stored, so no persona read on the way to the slot
    persona = resources.repository().get_persona(piece.persona_id)
    if persona is None:
        return False
    return adopt_stored_image(piece, persona, storage, resources.repository(), resources.settings())


def personas_of(pieces: Sequence[PieceRow]) -> dict[str, Persona]:
    """Each distinct persona of ``pieces``, read once; ``InvalidInput`` if one no longer exists."""
    personas: dict[str, Persona] = {}
    for piece in pieces:
        if piece.persona_id not in personas:
            persona = resources.repository().get_persona(piece.persona_id)
            if persona is None:
                raise InvalidInput(f"persona {piece.persona_id!r} of piece {piece.id} no longer exists")
            personas[piece.persona_id] = persona
    return personas


def image_work(piece: PieceRow, personas: Mapping[str, Persona]) -> Callable[[], TimedImage]:
    """What runs inside one slot for a lone piece: its one image."""
    return partial(
        generate_piece, piece, personas[piece.persona_id], resources.image_backend(), resources.settings()
    )


def group_work(
    pieces: Sequence[PieceRow], personas: Mapping[str, Persona]
) -> Callable[[], list[TimedImage | Exception]]:
    """What runs inside one slot for an image group: one pipeline call for all its pieces."""
    return partial(generate_piece_group, pieces, personas, resources.image_backend(), resources.settings())


def _charge_discarded(pieces: tuple[PieceRow, ...], future: Future[Any]) -> None:
    """Charge the generations of an unclaimed queued group once they finished (never raises)."""
    if future.cancelled() or future.exception() is not None:
        return
    result = future.result()
    timed = result if isinstance(result, list) else [result]
    repo = resources.repository()
    for piece, image in zip(pieces, timed, strict=False):
        if isinstance(image, TimedImage):
            try:
                charge_generation(piece, image, repo)
            except Exception as exc:  # called from the dispatcher's thread: log, never raise
                logger.warning("could not charge the discarded generation of %s: %s", piece.id, exc)
