"""Keep the global ``image-generation`` slots busy without flooding the Prefect server.

Why this exists: when 50 tasks each block on ``concurrency("image-generation")``, every refused
client sleeps for the server's Retry-After (up to 30 s, grown by the average slot occupancy), so
slots sit free while work waits (measured utilization: docs/benchmarks.md).

Instead, each process runs at most ``max_slots`` *slot holders*. A holder acquires one slot of the
global limit (``strict=True``, so a missing limit is an error, never silently ignored) and then runs
queued generations back to back inside that slot, releasing it once the local queue has been empty
for ``linger_s``. Every generation still runs inside a slot of the global limit, so across all
processes and workers at most ``limit`` generations run at once; but a slot changes hands locally
in microseconds, and only holders (never individual pieces) talk to the server. A holder refused by
the server (other processes hold the slots) retries after ``min(Retry-After, poll_s)`` with jitter;
only one holder per process asks at a time (the others wait for it locally), so a process adds at most
one request per ``poll_s`` however much work it has waiting, and ``poll_s`` can be short enough that a
slot freed by another process is taken again within a fraction of a second.

Holders call the server's lease API directly (increment with lease, renew, release) with their own
client. Prefect's ``concurrency()`` context manager funnels every acquisition of a process through one
queue service and ties leases to the current task run; with several processes contending for the
slots, freed slots then stayed idle for seconds (figures: docs/benchmarks.md).

Holders run in a fresh ``contextvars`` context that carries only Prefect's settings. They must not
inherit the context of the task run that happened to spawn them: Prefect records every lease taken
inside a task run and revokes it when that task run ends, which would free the server-side slot
while the holder is still generating, so more generations than the limit ran at once across
processes (see docs/benchmarks.md).

Priorities and fair shares (issue 14). Each piece of work has a priority (``high`` | ``normal`` |
``low``) and a share (its batch). Inside a process, the next item a holder takes is from the most
urgent priority present, and among equal ones from the share served least so far (round-robin between
batches instead of first in, first out). Across processes, the server's limit knows nothing of
priorities, so dispatchers given a ``DemandTable`` (``contentforge/db/turns.py``: one row per share in
the ContentForge database, which every generating process shares) publish what they wait for and run,
and each computes the same split from the same rows (``contentforge/fair_share.py``: strict
priorities, then an even split, its remainder to the least served). A process then:

- asks the server for a slot only while it holds fewer than its shares' targets (or a slot is free
  that no other process is owed, so none idles), and only when the table shows a free slot or
  ``poll_s`` passed since its last refusal, so a freed slot goes to whom the split entitles, not to
  whoever polls first, and the server is not asked in vain many times a second;
- gives its slot back after the current generation when a more urgent share somewhere waits for a
  slot (so that share takes the next slot that frees, whoever held it), or when another process is
  owed a slot and this one is the most above its target. Nothing is preempted: a high-priority
  generation waits for one generation to end, plus the table's refresh (``refresh_s``) and a poll
  (``poll_s / 4`` for ``high``).

A batch that joins the rotation starts level with the least served batch already in it: it takes its
turns from then on, it does not catch up on what the others were served before it arrived.

Why a table and not more Prefect limits: a limit counts slots but cannot say which batch waits, at
which priority, or how much it was served, and an even split needs all three. The table is advice,
not the guard: every generation still runs inside a slot of the global limit, so a stale or missing
row costs fairness for a moment, never the limit. A process that dies stops refreshing its rows and
drops out of the split after ``DemandTable.fresh_s``.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.context import SettingsContext, get_settings_context

from contentforge.db.turns import DemandTable
from contentforge.fair_share import (
    DEFAULT_PRIORITY,
    ShareDemand,
    participant_target,
    priority_rank,
    slot_targets,
    unserved_above,
)

T = TypeVar("T")
logger = logging.getLogger(__name__)
FAIR_QUANTUM = 2
"""Served counts are compared in steps of this many generations, so the remainder of an uneven split
moves between processes every few generations rather than after each (each move costs a release and
an acquisition)."""
DEFAULT_SHARE = "-"
"""The share of work submitted without one (moderation, model calls): one share per process."""


def _retry_after(exc: BaseException) -> float | None:
    """Retry-After seconds if ``exc`` is the server's 423 "limit full" answer, else None."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423:
            return float(cause.response.headers.get("Retry-After", "1"))
        cause = cause.__cause__
    return None


@dataclass
class _Work:
    future: Future[Any]
    fn: Callable[[], Any]
    rank: int
    share: str
    seq: int


@dataclass
class _LocalQueue:
    """Work waiting in this process: most urgent priority first, then the least served share.

    Not thread-safe on its own: the dispatcher calls it under its lock.
    """

    waiting: dict[tuple[int, str], deque[_Work]] = field(default_factory=dict)
    served: Counter[str] = field(default_factory=Counter)
    running: Counter[str] = field(default_factory=Counter)
    ranks: dict[str, int] = field(default_factory=dict)
    seq: int = 0

    def put(self, future: Future[Any], fn: Callable[[], Any], rank: int, share: str) -> None:
        active = {s for _, s in self.waiting} | set(self.running)
        if share not in active and active:
            # A batch that (re)joins starts level with the least served active one (as in start-time
            # fair queueing): it takes its turn in the rotation, it does not catch up on the past.
            self.served[share] = max(self.served[share], min(self.served[s] for s in active))
        self.seq += 1
        self.waiting.setdefault((rank, share), deque()).append(_Work(future, fn, rank, share, self.seq))
        self.ranks[share] = min(rank, self.ranks.get(share, rank))

    def _prune(self) -> None:
        """Forget cancelled work (a discarded generation) so it is neither run nor advertised."""
        for key in list(self.waiting):
            items = self.waiting[key]
            while items and items[0].future.cancelled():
                items.popleft()
            if not items or all(work.future.cancelled() for work in items):
                del self.waiting[key]

    def cancel_share(self, share: str) -> int:
        """Cancel every waiting item of ``share`` (a stopped batch); returns how many were cancelled."""
        cancelled = sum(
            work.future.cancel() for (_, s), items in self.waiting.items() if s == share for work in items
        )
        self._prune()
        return cancelled

    def __len__(self) -> int:
        self._prune()
        return sum(len(items) for items in self.waiting.values())

    def top_rank(self) -> int | None:
        self._prune()
        return min((rank for rank, _ in self.waiting), default=None)

    def take(self) -> _Work | None:
        """The next work to run, marked running; None when nothing waits."""
        rank = self.top_rank()
        if rank is None:
            return None
        candidates = [key for key in self.waiting if key[0] == rank]
        key = min(candidates, key=lambda k: (self.served[k[1]], self.waiting[k][0].seq))
        work = self.waiting[key].popleft()
        if not self.waiting[key]:
            del self.waiting[key]
        self.served[work.share] += 1
        self.running[work.share] += 1
        return work

    def done(self, work: _Work) -> None:
        self.running[work.share] -= 1
        if self.running[work.share] <= 0:
            del self.running[work.share]

    def demands(self, participant: str) -> list[ShareDemand]:
        """This process's shares as rows of the demand table."""
        self._prune()
        waiting: Counter[tuple[int, str]] = Counter()
        for (rank, share), items in self.waiting.items():
            waiting[(rank, share)] += sum(not work.future.cancelled() for work in items)
        shares = {share for _, share in waiting} | set(self.running)
        rows = []
        for share in sorted(shares):
            ranks = [rank for rank, s in waiting if s == share and waiting[(rank, s)]]
            rank = min(ranks) if ranks else self.ranks.get(share, priority_rank(DEFAULT_PRIORITY))
            rows.append(
                ShareDemand(
                    participant=participant,
                    share=share,
                    rank=rank,
                    waiting=sum(n for (_, s), n in waiting.items() if s == share),
                    running=self.running[share],
                    served=self.served[share],
                )
            )
        return rows


class SlotDispatcher:
    """Runs callables inside slots of a Prefect global concurrency limit, keeping held slots busy.

    ``demand_table``: share the slots with other processes by priority and evenly between batches
    (module docstring); without it the process competes for slots on its own, as before.
    ``limit_size``: the limit's number of slots for the split (default ``max_slots``).
    """

    def __init__(
        self,
        limit_name: str,
        max_slots: int,
        linger_s: float = 0.25,
        poll_s: float = 0.2,
        lease_s: float = 60.0,
        demand_table: DemandTable | None = None,
        limit_size: int | None = None,
        refresh_s: float = 0.1,
    ) -> None:
        self.limit_name = limit_name
        self.max_slots = max_slots
        self.linger_s = linger_s
        self.poll_s = poll_s
        self.lease_s = lease_s
        """Server-side lease of a held slot, renewed every third of it while held: a process that dies
        (killed, crashed machine) gives its slots back within this time."""
        self.demand_table = demand_table
        self.limit_size = limit_size or max_slots
        self.refresh_s = refresh_s
        """How often the demand table is written and read while this process has work for the limit."""
        self.participant = uuid.uuid4().hex
        self._queue = _LocalQueue()
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._holders = 0
        self._idle_holders = 0
        self._held = 0
        self._rows: list[ShareDemand] = []
        """Every share of the limit as last read from the demand table."""
        self._yielded_since_refresh = 0
        self._coordinating = False
        self._refused_at = 0.0
        self._refresh_now = threading.Event()
        self.leases_taken = 0
        """How many slots were acquired from the server; far fewer than the work items when busy."""
        self.lease_spans: list[tuple[datetime, datetime]] = []
        """When each slot was held (granted, released): every work item runs inside one of them."""
        self._threads: list[threading.Thread] = []
        self._asking = threading.Lock()
        """Held by the one holder of this process that is asking the server for a slot."""

    def submit(
        self, fn: Callable[[], T], *, priority: str = DEFAULT_PRIORITY, share: str = DEFAULT_SHARE
    ) -> Future[T]:
        """Queue ``fn`` to run inside a slot; the future resolves with its result or exception.

        ``priority``: ``high`` | ``normal`` | ``low``; ``share``: what it is fair between (a batch id).
        """
        rank = priority_rank(priority)
        future: Future[T] = Future()
        with self._lock:
            self._queue.put(future, fn, rank, share)
            self._has_work.notify()
            pending = len(self._queue)
            spawn = self._holders < self.max_slots and pending > self._idle_holders
            if spawn:
                self._holders += 1
            coordinate = self.demand_table is not None and not self._coordinating
            if coordinate:
                self._coordinating = True
        self._refresh_now.set()
        if spawn:
            self._start_thread(self._hold, "slot-holder")
        if coordinate:
            self._start_thread(self._coordinate, "slot-demand")
        return future

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        settings = get_settings_context()
        thread = threading.Thread(
            target=contextvars.Context().run,
            args=(self._with_settings, target, settings.profile, settings.settings),
            name=name,
            daemon=True,
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Wait for the holders to finish their work and give their slots back.

        Registered at interpreter exit: a process that ends while a holder lingers would otherwise
        leave its slot taken on the server until the lease expires, idling it for everyone.
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self._threads)
        self._refresh_now.set()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def cancel_share(self, share: str) -> int:
        """Cancel every generation of ``share`` still waiting for a slot; returns how many.

        Their callers' ``result()`` raises ``CancelledError``. What already runs finishes. Holders left
        without work give their slots back after ``linger_s``, so a stopped batch frees its slots at once.
        """
        with self._lock:
            cancelled = self._queue.cancel_share(share)
            self._has_work.notify_all()
        self._refresh_now.set()
        return cancelled

    def run(self, fn: Callable[[], T], *, priority: str = DEFAULT_PRIORITY, share: str = DEFAULT_SHARE) -> T:
        """Submit and wait."""
        return self.submit(fn, priority=priority, share=share).result()

    def _with_settings(self, target: Callable[[], None], profile: Any, settings: Any) -> None:
        """Run under the submitter's Prefect settings, outside any flow or task run context."""
        with SettingsContext(profile=profile, settings=settings):
            target()

    # --- slot holders -------------------------------------------------------------------------

    def _hold(self) -> None:
        try:
            with get_client(sync_client=True) as client:
                while self._has_pending():
                    self._serve_one_lease(client)
        except Exception as exc:
            # A slot cannot be had at all (e.g. the limit does not exist): fail the waiting work
            # loudly instead of leaving it queued forever.
            logger.error("cannot acquire a slot of %r: %s", self.limit_name, exc)
            self._fail_pending(exc)
        finally:
            with self._lock:
                self._holders -= 1

    def _fail_pending(self, exc: BaseException) -> None:
        while True:
            with self._lock:
                work = self._queue.take()
                if work is not None:
                    self._queue.done(work)
            if work is None:
                return
            if work.future.set_running_or_notify_cancel():
                work.future.set_exception(exc)

    def _has_pending(self) -> bool:
        with self._lock:
            return len(self._queue) > 0

    def _serve_one_lease(self, client: SyncPrefectClient) -> bool:
        """Acquire one slot and drain work inside it; False if no slot was had this time."""
        with self._asking:
            if not self._has_pending():  # another holder took the last work while this one waited
                return False
            if not self._may_ask_now():  # the split gives the next slot to another process, or none is free
                self._refresh_now.wait(self.refresh_s)
                return False
            asked = time.monotonic()
            try:
                response = client.increment_concurrency_slots_with_lease(
                    names=[self.limit_name], slots=1, mode="concurrency", lease_duration=self.lease_s
                )
            except httpx.HTTPStatusError as exc:
                wait = _retry_after(exc)
                if wait is None:
                    raise
                logger.debug(
                    "%s %s: refused in %.3f s",
                    self.limit_name,
                    self.participant[:6],
                    time.monotonic() - asked,
                )
                self._refused_at = time.monotonic()
                time.sleep(min(wait, self._poll_s()) * random.uniform(0.5, 1.0))
                return False
        logger.debug(
            "%s %s: slot granted in %.3f s", self.limit_name, self.participant[:6], time.monotonic() - asked
        )
        body = response.json()
        if not body.get("limits"):
            # strict: a missing limit must never mean "run unlimited".
            raise LookupError(
                f"global concurrency limit {self.limit_name!r} must be created before use "
                "(run `contentforge bootstrap`)"
            )
        lease_id = body["lease_id"]
        granted = datetime.now(UTC)
        with self._lock:
            self.leases_taken += 1
            self._held += 1
        held = threading.Event()
        renewer = threading.Thread(
            target=self._keep_lease, args=(client, lease_id, held), name="slot-lease", daemon=True
        )
        renewer.start()
        try:
            self._drain()
        finally:
            held.set()
            renewer.join()
            logger.debug("%s %s: releasing a slot", self.limit_name, self.participant[:6])
            try:
                client.release_concurrency_slots_with_lease(lease_id)
            except Exception as exc:  # the lease then expires by itself after lease_s
                logger.warning("releasing a slot of %r failed: %s", self.limit_name, exc)
            with self._lock:
                self._held -= 1
                self.lease_spans.append((granted, datetime.now(UTC)))
            self._refresh_now.set()
        return True

    def _poll_s(self) -> float:
        """How long a refused holder waits before asking again.

        With the demand table, only ``refresh_s``: the next ask waits for the table to show a free slot
        anyway (``_may_ask_now``), and asking blindly every few hundredths of a second costs the Prefect
        server a write each time; under load it answered with 503s, whose client-side back-off (seconds)
        then stalled this process's one asking holder.
        """
        return self.poll_s if self.demand_table is None else min(self.poll_s, self.refresh_s)

    def _keep_lease(self, client: SyncPrefectClient, lease_id: Any, released: threading.Event) -> None:
        """Renew the lease every third of its duration until the holder releases it."""
        while not released.wait(self.lease_s / 3):
            try:
                client.renew_concurrency_lease(lease_id, self.lease_s)
            except Exception as exc:  # the next renewal may still succeed before the lease ends
                logger.warning("renewing a slot of %r failed: %s", self.limit_name, exc)

    def _drain(self) -> None:
        """Run work back to back inside the held slot until none is left or the split says to yield."""
        while True:
            with self._lock:
                if self._should_yield():
                    return
                self._idle_holders += 1
                try:
                    if not len(self._queue):
                        self._has_work.wait(self.linger_s)
                    work = self._queue.take()
                finally:
                    self._idle_holders -= 1
            if work is None:
                return
            if work.future.set_running_or_notify_cancel():
                logger.debug("%s: work started", self.limit_name)
                try:
                    work.future.set_result(work.fn())
                except BaseException as exc:  # the caller's task decides what a failure means
                    work.future.set_exception(exc)
            with self._lock:
                self._queue.done(work)
            self._refresh_now.set()

    # --- the split between processes ----------------------------------------------------------

    def _split(self) -> tuple[dict[tuple[str, str], int], list[ShareDemand], int, int]:
        """The split as this process sees it (called under the lock): targets, the other processes'
        shares, the slots they are owed (targets they do not run yet) and the slots free right now.

        The targets come from the rows as last read, this process's own included, so that every process
        computes them from the same table; counting its own fresher numbers against the others' older
        ones would make each process think itself the most served and give slots away that nobody
        then asks for. Before its own first write, its local numbers stand in.
        """
        view = self._rows
        if not any(row.participant == self.participant for row in view):
            view = [*view, *self._queue.demands(self.participant)]
        targets = slot_targets(view, self.limit_size, quantum=FAIR_QUANTUM)
        others = [row for row in view if row.participant != self.participant]
        running: Counter[str] = Counter()
        for row in others:
            running[row.participant] += row.running
        owed = sum(max(0, participant_target(targets, who) - n) for who, n in running.items())
        owed += sum(targets[row.key] for row in others if row.participant not in running)
        free = self.limit_size - sum(running.values()) - self._held
        return targets, others, owed, free

    def _may_ask_now(self) -> bool:
        """Whether this process asks the server for one more slot now.

        Only when the split entitles it (below its target, and no more urgent share elsewhere is owed the
        slot; or a slot is free that no other process is owed, so none idles), and then only when the
        table shows a free slot or ``poll_s`` has passed since the last refusal (the table may be stale).
        """
        if self.demand_table is None:
            return True
        with self._lock:
            top = self._queue.top_rank()
            targets, others, owed, free = self._split()
            if top is not None and unserved_above(others, targets, top) > 0:
                return False
            entitled = self._held < participant_target(targets, self.participant) or free > owed
            # High-priority work asks four times as often: it is rare, and it must not wait a whole poll.
            patience = self.poll_s / 4 if top == 0 else self.poll_s
            return entitled and (free > 0 or time.monotonic() - self._refused_at >= patience)

    def _should_yield(self) -> bool:
        """Whether a holder between two items gives its slot back (called under the lock).

        It does when a more urgent share elsewhere waits (whichever holder finishes first, so that share
        takes the next free slot), or when another process is owed a slot and this one is the one to
        give it: the most above its target, then the most served. Naming one giver keeps two processes
        from both giving a slot back for the same debt (then one slot would idle until asked for).
        """
        if self.demand_table is None:
            return False
        top = self._queue.top_rank()
        if top is None:
            return False  # nothing here to run: the holder lingers, then releases
        targets, others, owed, _ = self._split()
        if unserved_above(others, targets, top) > self._yielded_since_refresh:
            self._yielded_since_refresh += 1  # one slot per waiting generation, until the next read
            return True
        if owed <= self._yielded_since_refresh:
            return False
        mine = participant_target(targets, self.participant)
        excess: Counter[str] = Counter({self.participant: self._held - mine})
        served: Counter[str] = Counter({self.participant: sum(self._queue.served.values())})
        for row in others:
            excess[row.participant] += row.running
            served[row.participant] += row.served
        for who in {row.participant for row in others}:
            excess[who] -= participant_target(targets, who)
        giver = max(excess, key=lambda who: (excess[who], served[who], who))
        if giver == self.participant and excess[giver] > 0:
            self._yielded_since_refresh += 1
            return True
        return False

    def _coordinate(self) -> None:
        """Publish this process's demands and read everyone's, every ``refresh_s`` while work remains."""
        table = self.demand_table
        assert table is not None
        while True:
            self._refresh_now.wait(self.refresh_s)
            self._refresh_now.clear()
            with self._lock:
                mine = self._queue.demands(self.participant)
                idle = not mine and self._held == 0
                if idle:
                    self._coordinating = False
            try:
                rows = table.publish(self.participant, mine)  # an empty list withdraws this process
            except Exception as exc:  # advice only: keep the last view and try again
                logger.warning("demand table of %r: %s", self.limit_name, exc)
            else:
                with self._lock:
                    self._rows = rows
                    self._yielded_since_refresh = 0
            if idle:
                return
            time.sleep(self.refresh_s)  # at most one write per refresh_s, however busy


_dispatchers: dict[tuple[str, int], SlotDispatcher] = {}
_dispatchers_lock = threading.Lock()


@atexit.register
def _close_dispatchers() -> None:
    for dispatcher in list(_dispatchers.values()):
        dispatcher.close()


def get_dispatcher(limit_name: str, max_slots: int, linger_s: float = 0.25) -> SlotDispatcher:
    """The process-wide dispatcher for a limit, shared by every batch running in this process.

    ``linger_s``: how long a holder keeps its slot once the local queue is empty, waiting for more work.
    Worth a quarter second where work arrives task by task (moderation, model calls); image generations
    are queued all at once (``tasks/generation_queue.py``), so their holders give a slot back almost at once.
    The generation queue attaches the demand table to its dispatcher (``generation_dispatcher``).
    """
    with _dispatchers_lock:
        key = (limit_name, max_slots)
        if key not in _dispatchers:
            _dispatchers[key] = SlotDispatcher(limit_name, max_slots, linger_s=linger_s)
        return _dispatchers[key]
