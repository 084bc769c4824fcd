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

A queued generation is claimed once: if it failed, its exception is raised in the claiming task,
whose retry finds nothing queued and generates afresh. Queueing is only a head start: a group that
cannot be prepared here is left for its task, which meets the same problem and reports it.

Every generation carries its batch's priority (``high`` | ``normal`` | ``low``) and its batch id as its
share: the dispatcher runs the most urgent first and shares slots evenly between batches, in this
process and, through the demand table in the database, with every other generating process
(``tasks/dispatch.py`` says how).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar, cast

from contentforge.batch import (
    TimedImage,
    adopt_stored_image,
    charge_generation,
    generate_piece,
    generate_piece_group,
)
from contentforge.db import PieceRow
from contentforge.db.turns import DemandTable
from contentforge.domain import Persona, PieceStatus
from contentforge.errors import InvalidInput
from contentforge.fair_share import DEFAULT_PRIORITY
from contentforge.storage import content_key
from tasks import resources
from tasks.dispatch import SlotDispatcher
from tasks.planning import load_piece

T = TypeVar("T")
GroupKey = tuple[str, ...]
"""The ids of the pieces one queued generation makes, in order."""
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuedGeneration:
    future: Future[Any]
    queued_at: datetime
    pieces: tuple[PieceRow, ...]


class GenerationQueue:
    """Generations submitted to the slot dispatcher before their tasks run, until claimed or discarded."""

    def __init__(self) -> None:
        self._queued: dict[GroupKey, QueuedGeneration] = {}
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
        retry finds nothing queued, so it generates afresh.
        """
        with self._lock:
            queued = self._queued.pop(key, None)
        if queued is not None:
            return cast(T, queued.future.result()), queued.queued_at
        queued_at = datetime.now(UTC)
        return generation_dispatcher().run(work, priority=priority, share=share or "-"), queued_at

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


def generation_dispatcher() -> SlotDispatcher:
    """The process's ``image-generation`` dispatcher, sharing the slots with other processes through the
    demand table of the configured database (attached on first use)."""
    dispatcher, sessions = resources.dispatcher(), resources.repository().sessions
    table = dispatcher.demand_table
    if table is None or table.sessions is not sessions:  # first use, or the database was reconfigured
        config = resources.settings()
        dispatcher.limit_size = config.generation_slots
        dispatcher.demand_table = DemandTable(sessions, config.concurrency_limit_name)
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
