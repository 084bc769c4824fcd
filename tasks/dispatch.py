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
client, one attempt per acquisition or release (``tasks/slot_leases.py``): a busy server's 503 costs a
poll, not the client's back-off of seconds, and only ``busy_budget_s`` of them fails the waiting work.
Prefect's ``concurrency()`` context manager funnels every acquisition of a process through one queue
service and ties leases to the current task run; with several processes contending for the
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
the ContentForge database, which every generating process shares) publish what they wait for, run and
have started, and each computes the same split from the same rows (``contentforge/fair_share.py``:
strict priorities, then equal progress). A process then asks the server for a slot only when the split
entitles it (``SplitView.may_ask``), and after a refusal only when rows read since show a slot given
back, or its patience ran out (``_may_ask_now``: ``full_poll_s`` while the table shows every slot held,
since each refused request is a write on the Prefect server); and gives a slot back between two
generations when the split says so (``SplitView.should_yield``: a more urgent share elsewhere waits, or
another process is owed a slot and this one is the most above its target). A process publishes its rows
every ``refresh_s``, and at once when one of its holders takes or gives back a slot.

Nothing is preempted: a high-priority generation waits for the first generation to end after its
request, and then for the hand-off, kept short: the holder reads the table afresh when its generation
ends (not a view up to ``refresh_s`` old) and, when it gives its slot back for more urgent work in
another process, hands the slot's lease to that process (``SlotOffers``, ``_hand_over``) instead of
releasing it: the waiting process looks for offers each time its asking holder wakes (every
``refresh_s / 4`` while it waits for high work) and takes the lease over, so the slot never goes free
on the server for a third process to take, and no server round trip is spent. An offer not taken
within ``offer_wait_s`` is withdrawn and the slot released as before. Slots moved between equal shares
are released (no one waits on them as urgently). In one process, the holder that finishes first takes
the high item next.

Why a table and not more Prefect limits: a limit counts slots but cannot say which batch waits, at
which priority, or how far it has progressed, and equal progress needs all three. The table is advice,
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
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, TypeVar

from prefect.context import SettingsContext, get_settings_context

from contentforge.db.slot_offers import OfferState, SlotOffers
from contentforge.db.turns import DemandTable
from contentforge.fair_share import (
    DEFAULT_PRIORITY,
    LocalQueue,
    ShareDemand,
    SplitView,
    join_level,
    priority_rank,
)
from tasks.prefect_clients import api_client
from tasks.slot_leases import SlotLeases, is_transient, retry_after

T = TypeVar("T")
logger = logging.getLogger(__name__)
DEFAULT_SHARE = "-"
"""The share of work submitted without one (moderation, model calls): one share per process."""


class SlotDispatcher:
    """Runs callables inside slots of a Prefect global concurrency limit, keeping held slots busy.

    ``demand_table``: share the slots with other processes by priority and evenly between batches
    (module docstring); without it the process competes for slots on its own, as before.
    ``limit_size``: the limit's number of slots for the split (default ``max_slots``).
    ``slot_offers``: hand a slot given back for another process to it directly, on the same database
    as ``demand_table`` (``contentforge.db.slot_offers``).
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
        busy_budget_s: float = 60.0,
        full_poll_s: float = 2.0,
        max_poll_s: float = 0.8,
        offer_wait_s: float = 0.3,
        slot_offers: SlotOffers | None = None,
    ) -> None:
        self.limit_name = limit_name
        self.max_slots = max_slots
        self.linger_s = linger_s
        self.poll_s = poll_s
        self.lease_s = lease_s
        """Server-side lease of a held slot, renewed every third of it while held: a process that dies
        (killed, crashed machine) gives its slots back within this time."""
        self.demand_table = demand_table
        self.offers = slot_offers
        """Where a slot given back for another process is handed straight to it (``SlotOffers``, on the
        demand table's database); without it, such a slot is released on the server."""
        self.offer_wait_s = offer_wait_s
        """How long a slot offered to another process waits to be taken before its giver withdraws the
        offer and releases the slot on the server instead (the recipient looks every ``refresh_s / 4``
        while it waits for high-priority work, every ``refresh_s`` otherwise)."""
        self.busy_budget_s = busy_budget_s
        """How long slot requests may keep meeting a busy or unreachable server before waiting work fails."""
        self._busy_since: float | None = None
        self.limit_size = limit_size or max_slots
        self.max_poll_s = max_poll_s
        """The longest wait between two refused requests of a dispatcher without a demand table."""
        self._refusals = 0
        """Refusals (423) in a row since the last slot granted."""
        self.full_poll_s = full_poll_s
        """How long a refused process waits before asking again while the table shows every slot held:
        each refused request is a write on the Prefect server (one writer on SQLite), and a slot given
        back shows in the table at once (its process publishes it), so only a slot the table does not
        know of (a dead process's lease running out) waits for this."""
        self.refresh_s = refresh_s
        """How often the demand table is written and read while this process has work for the limit."""
        self.participant = uuid.uuid4().hex
        self._queue = LocalQueue()
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._holders = 0
        self._idle_holders = 0
        self._held = 0
        self._rows: list[ShareDemand] = []
        """Every share of the limit as last read from the demand table."""
        self._yielded_since_refresh = 0
        self._joined: set[str] = set()
        """Shares already levelled with the other processes' (``join_level``) and published."""
        self._coordinating = False
        self._refused_at = 0.0
        self._refused_running = -1
        """Slots the others ran (table) when this process was last refused: a free-slot ask needs news."""
        self._rows_at = 0.0
        """When ``_rows`` were read (monotonic)."""
        self._refresh_now = threading.Event()
        self._publish_now = threading.Event()
        """Publish at once, not after ``refresh_s``: this process took or gave back a slot."""
        self._news = threading.Event()
        """Wakes the asking holder: new rows, new work, a slot given back."""
        self.leases_taken = 0
        """How many slots this process held, acquired from the server or handed over by another process
        (``offers_taken``); far fewer than the work items when busy."""
        self.offers_taken = 0
        """How many slots other processes handed to this one (counted in ``leases_taken`` too)."""
        self.offers_handed = 0
        """How many slots this process handed to another one instead of releasing them."""
        self.offers_withdrawn = 0
        """How many slots this process offered that were not taken in time (then released)."""
        self.offers_lost = 0
        """Offers the database could not settle: those slots idle until their leases expire."""
        self.lease_spans: list[tuple[datetime, datetime]] = []
        """When each slot was held by this process (granted or taken over; released or handed over):
        every work item runs inside one of them."""
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
        self._news.set()
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
        self._news.set()
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
        self._news.set()
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
            with api_client(sync_client=True) as client:
                leases = SlotLeases(client, self.limit_name, self.lease_s)
                while self._has_pending():
                    self._serve_one_lease(leases)
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

    def _serve_one_lease(self, leases: SlotLeases) -> bool:
        """Acquire one slot and drain work inside it; False if no slot was had this time."""
        with self._asking:
            if not self._has_pending():  # another holder took the last work while this one waited
                return False
            asked = time.monotonic()
            lease_id = self._take_offer(leases)
            how = "handed over"
            if lease_id is None:
                how = "granted"
                if not self._may_ask_now():  # the split gives the next slot elsewhere, or none is free
                    self._await_news()
                    return False
                lease_id = self._acquire(leases, asked)
                if lease_id is None:
                    return False
        # Outside ``_asking``: while this holder drains, another holder of this process may ask or take
        # the next offer (a high batch of several generations is handed several slots at once).
        return self._serve(leases, lease_id, asked, how)

    def _acquire(self, leases: SlotLeases, asked: float) -> Any | None:
        """One request to the server for a slot (the caller holds ``_asking``); None when refused or the
        server was busy (after a pause), the lease otherwise. Raises once the server is unusable."""
        try:
            lease_id = leases.acquire()
        except Exception as exc:
            wait = retry_after(exc)
            if wait is None and not self._busy_within_budget(exc):
                raise
            if wait is not None:
                self._busy_since = None  # the server answered: it is not the server that is busy
            logger.debug(
                "%s %s: %s in %.3f s",
                self.limit_name,
                self.participant[:6],
                "refused" if wait is not None else f"server busy ({exc!r:.60})",
                time.monotonic() - asked,
            )
            with self._lock:
                self._refused_at = time.monotonic()
                self._refused_running = self._others_running()
                self._refusals += int(wait is not None)
            pause = min(wait or self._poll_s(), self._poll_s())
            if self._urgent_waiting():  # an offer for it may come any moment: look again soon
                pause = min(pause, self.refresh_s / 4)
            time.sleep(pause * random.uniform(0.5, 1.0))
            return None
        self._busy_since = None
        self._refusals = 0
        return lease_id

    def _serve(self, leases: SlotLeases, lease_id: Any, asked: float, how: str) -> bool:
        """Drain work inside the slot of ``lease_id``, then hand it to the process it is owed to or
        release it on the server; True (a slot was had)."""
        logger.debug(
            "%s %s: slot %s in %.3f s", self.limit_name, self.participant[:6], how, time.monotonic() - asked
        )
        granted = datetime.now(UTC)
        with self._lock:
            self.leases_taken += 1
            self._held += 1
        held = threading.Event()
        renewer = threading.Thread(
            target=self._keep_lease, args=(leases, lease_id, held), name="slot-lease", daemon=True
        )
        renewer.start()
        recipient: str | None = None
        handed = False
        try:
            recipient = self._drain()
        finally:
            ended = datetime.now(UTC)
            try:
                if recipient is not None:  # the renewer keeps the lease alive while it is on offer
                    handed = self._hand_over(lease_id, recipient)
            finally:
                held.set()
                renewer.join()
            if not handed:
                logger.debug("%s %s: releasing a slot", self.limit_name, self.participant[:6])
                self._release(leases, lease_id)
                ended = datetime.now(UTC)
            with self._lock:
                self._held -= 1
                self.lease_spans.append((granted, ended))
            self._publish_now.set()  # the others see the slot given back now, not after refresh_s
            self._news.set()
        return True

    def _urgent_waiting(self) -> bool:
        """Whether high-priority work waits in this process."""
        with self._lock:
            return self._queue.top_rank() == 0

    def _take_offer(self, leases: SlotLeases) -> Any | None:
        """The lease of a slot another process handed to this one, if one is on offer; else None.

        Taken whenever this process has work waiting (the caller checked): the giver read the table
        more recently than this process may have, and a slot not taken idles until withdrawn. The lease
        is renewed at once: one whose giver could not renew it may have expired on the server, and a
        generation in it would run outside the limit. A lease that cannot be renewed is released (a
        no-op if it expired) and not used.
        """
        if self.offers is None:
            return None
        try:
            offer = self.offers.take(self.participant)
        except Exception as exc:  # advice only: the server's limit is still there to ask
            # If the take committed unheard, the lease is nobody's until it expires (lease_s at most).
            logger.debug("slot offers of %r: %s", self.limit_name, exc)
            return None
        if offer is None:
            return None
        try:
            leases.renew(offer.lease_id)
        except Exception as exc:
            logger.warning("a slot of %r handed over could not be renewed: %s", self.limit_name, exc)
            self._release(leases, offer.lease_id)
            return None
        with self._lock:
            self.offers_taken += 1
        return offer.lease_id

    def _hand_over(self, lease_id: Any, recipient: str) -> bool:
        """Offer the held slot to ``recipient`` and wait up to ``offer_wait_s`` for it to be taken.

        True when the recipient took it: from then on its lease is the recipient's, and this process
        neither generates in it nor releases it. False when the offer was withdrawn untaken or never
        written (the recipient got a slot elsewhere, or died; the database refused the offer): the
        caller releases the slot. Never raises: the caller must know which.
        """
        offers = self.offers
        if offers is None:
            return False
        offer_id = uuid.uuid4().hex  # chosen here, so a failed insert can be asked about (``_settle``)
        try:
            offers.offer(self.participant, recipient, str(lease_id), offer_id)
        except Exception as exc:  # it may have been written all the same (a reply lost)
            logger.debug("slot offers of %r: %s", self.limit_name, exc)
            return self._settle(offers, offer_id)
        deadline = time.monotonic() + self.offer_wait_s
        while time.monotonic() < deadline:
            time.sleep(self.refresh_s / 4)
            try:
                if offers.state(offer_id) is OfferState.TAKEN:
                    return self._handed(offers, offer_id)
            except Exception as exc:  # ``_settle`` decides
                logger.debug("slot offers of %r: %s", self.limit_name, exc)
        return self._settle(offers, offer_id)

    def _settle(self, offers: SlotOffers, offer_id: str) -> bool:
        """Withdraw an offer not seen taken; True if it was taken after all (handed over).

        A failed withdrawal is followed by a read of the row: taken, or not there (never written, or
        withdrawn by a call whose reply was lost), which leaves the lease with this process. If the
        database cannot say which within a few tries, the slot counts as handed over (``offers_lost``):
        a slot idle until its lease expires, rather than two generations in one slot.
        """
        for _ in range(3):
            try:
                if offers.withdraw(offer_id):
                    with self._lock:
                        self.offers_withdrawn += 1
                    return False
                state = offers.state(offer_id)
            except Exception as exc:
                logger.debug("slot offers of %r: %s", self.limit_name, exc)
                time.sleep(self.refresh_s)
                continue
            if state is OfferState.TAKEN:
                return self._handed(offers, offer_id)
            if state is OfferState.ABSENT:
                return False
        with self._lock:
            self.offers_lost += 1
        logger.warning(
            "a slot offer of %r could not be settled: the slot stays unused until its lease expires",
            self.limit_name,
        )
        return True

    def _handed(self, offers: SlotOffers, offer_id: str) -> bool:
        with self._lock:
            self.offers_handed += 1
        try:
            offers.forget(offer_id)
        except Exception as exc:  # a taken row left behind is ignored, and deleted after ``forget_s``
            logger.debug("slot offers of %r: %s", self.limit_name, exc)
        return True

    def _busy_within_budget(self, exc: BaseException) -> bool:
        """Whether a failed slot call is worth repeating soon: the server was busy or unreachable for a
        moment, and has not been for longer than ``busy_budget_s`` (then the waiting work fails)."""
        if not is_transient(exc):
            return False
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        return now - self._busy_since <= self.busy_budget_s

    def _release(self, leases: SlotLeases, lease_id: Any) -> None:
        """Give the slot back, repeating a call the busy server refused every ``refresh_s`` or so for up to
        a third of the lease; after that the lease expires by itself."""
        deadline = time.monotonic() + self.lease_s / 3
        while True:
            try:
                leases.release(lease_id)
                return
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() > deadline:
                    logger.warning("releasing a slot of %r failed: %s", self.limit_name, exc)
                    return
            time.sleep(self.refresh_s * random.uniform(0.5, 1.0))

    def _poll_s(self) -> float:
        """How long a refused holder waits before asking again.

        With the demand table, only ``refresh_s``: the next ask waits for the table to show a free slot
        anyway (``_may_ask_now``), and asking blindly every few hundredths of a second costs the Prefect
        server a write each time; under load it answered with 503s, whose client-side back-off (seconds)
        then stalled this process's one asking holder.

        Without the table (moderation, model calls), nothing tells a refused process when a slot frees,
        so each refusal in a row doubles the wait, from ``poll_s`` up to ``max_poll_s``: a 3 x 50 run on
        the SQLite-backed server made 130-210 refused moderation requests at a fixed ``poll_s``, each a
        write that the server's one writer serialises (docs/benchmarks.md).
        """
        if self.demand_table is not None:
            return min(self.poll_s, self.refresh_s)
        doubled = self.poll_s * float(2 ** max(0, min(self._refusals, 8) - 1))
        return min(doubled, max(self.poll_s, self.max_poll_s))

    def _keep_lease(self, leases: SlotLeases, lease_id: Any, released: threading.Event) -> None:
        """Renew the lease every third of its duration until the holder releases it."""
        while not released.wait(self.lease_s / 3):
            try:
                leases.renew(lease_id)
            except Exception as exc:  # the next renewal may still succeed before the lease ends
                logger.warning("renewing a slot of %r failed: %s", self.limit_name, exc)

    def _drain(self) -> str | None:
        """Run work back to back inside the held slot until none is left or the split says to yield;
        the participant to hand the slot to when it yields to one (``SplitView.recipient``), else None.

        Between two items the holder reads the demand table afresh (``_read_rows``: one indexed read,
        shared by holders ending within ``refresh_s / 4``): a high-priority share elsewhere that appeared
        during the generation then gets this slot now, not a generation later, which it would when
        the view was up to ``refresh_s`` old and the holders' generations ended together.
        """
        first = True
        while True:
            if not self._urgent_waiting():  # nothing elsewhere outranks high work here: take it at once
                self._read_rows()
            with self._lock:
                if self._should_yield(fair=not first):
                    return self._view().recipient(self._queue.top_rank())
                self._idle_holders += 1
                try:
                    if not len(self._queue):
                        self._has_work.wait(self.linger_s)
                    work = self._queue.take()
                finally:
                    self._idle_holders -= 1
            if work is None:
                return None
            if first:  # the others see this slot in use now: none of them asks for it
                first = False
                self._publish_now.set()
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

    def _view(self) -> SplitView:
        """The split as this process sees it from the rows last read (called under the lock)."""
        own = self._queue.demands(self.participant, self.max_slots)
        return SplitView.of(self._rows, own, self.participant, self._held, self.limit_size)

    def _may_ask_now(self) -> bool:
        """Whether this process asks the server for one more slot now.

        Only when the split entitles it, and then: at once if it was never refused; after a refusal,
        when rows read since show a slot free that was not free then (another process gave one back), or
        else once its patience has passed: ``poll_s / 4`` for ``high`` work (rare, and it must not wait a
        whole poll), ``poll_s`` while the table is stale or shows a free slot, and ``full_poll_s`` while
        rows read since the refusal show every slot held. The table is advice (a holder between two
        items shows no running generation), so a process still asks now and then whatever it shows.
        """
        if self.demand_table is None:
            return True
        with self._lock:
            top = self._queue.top_rank()
            view = self._view()
            if not view.may_ask(top):
                return False
            if self._refused_running < 0:
                return True
            fresh = self._rows_at > self._refused_at
            if fresh and view.free > 0 and self._others_running() < self._refused_running:
                return True
            if top == 0:
                patience = self.poll_s / 4
            elif fresh and view.free <= 0:
                patience = self.full_poll_s
            else:
                patience = self.poll_s
            return time.monotonic() - self._refused_at >= patience

    def _others_running(self) -> int:
        """Generations the other processes run, as last read (called under the lock)."""
        return sum(row.running for row in self._rows if row.participant != self.participant)

    def _set_rows(self, rows: list[ShareDemand], read_at: float) -> None:
        """Keep rows just read (called under the lock). After a refusal, the others' running count it
        was refused at rises with them, so that any slot given back later reads as news."""
        self._rows = rows
        self._rows_at = max(self._rows_at, read_at)
        if self._refused_running >= 0:
            self._refused_running = max(self._refused_running, self._others_running())

    def _await_news(self) -> None:
        """Wait (the asking holder) until the rows or the local work change, or ``refresh_s``, then read
        the table itself.

        It reads rather than waiting for the coordinator's next publish: a publish is a write, and on a
        SQLite database that the batches also write to it can wait for the write lock for a good part
        of a second, while a slot given back elsewhere sat free (measured: a process owed a slot took it
        0.7 s after its holder released it). A read does not wait for the writer. With ``high`` work
        waiting it reads every ``refresh_s / 4``: a slot a holder elsewhere gives back for it shows there
        at once, and a quarter of ``refresh_s`` is the most this then adds.
        """
        wait = self.refresh_s / 4 if self._urgent_waiting() else self.refresh_s
        self._news.wait(wait)
        self._news.clear()
        self._read_rows()

    def _read_rows(self) -> None:
        """Read every share's row afresh, unless rows were read less than ``refresh_s / 4`` ago."""
        table = self.demand_table
        if table is None:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._rows_at < self.refresh_s / 4:
                return
            self._rows_at = now  # the other holders ending now use this read
        try:
            rows = table.read()
        except Exception as exc:  # advice only: keep the last view (the coordinator warns of a failing table)
            logger.debug("demand table of %r: %s", self.limit_name, exc)
            return
        with self._lock:
            self._set_rows(rows, now)
        self._news.set()

    def _should_yield(self, fair: bool = True) -> bool:
        """Whether a holder between two items gives its slot back (called under the lock).

        ``fair=False`` before a slot's first item: only for more urgent work elsewhere, not to even out
        equal shares. A grant given back unused is two server writes for nothing, and the split that
        let this process ask may be a fraction of a second older than the rows read since.
        """
        if self.demand_table is None:
            return False
        served = sum(self._queue.served.values())
        top = self._queue.top_rank()
        if self._view().should_yield(top, served, self._yielded_since_refresh, fair=fair):
            self._yielded_since_refresh += 1  # one slot per debt, until the next read
            return True
        return False

    def _level_new_shares(self) -> None:
        """Start each share this process publishes for the first time level with the other processes'
        least served share of its priority (called under the lock): a batch that joins a running
        rotation takes its turns from then on, it does not catch up on what the others were served."""
        mine = self._queue.demands(self.participant, self.max_slots)
        for row in mine:
            if row.share not in self._joined:
                self._queue.level(row.share, join_level(self._rows, row.rank, self.participant))
        self._joined = {row.share for row in mine}

    def _coordinate(self) -> None:
        """Publish this process's demands and read everyone's, every ``refresh_s`` while work remains."""
        table = self.demand_table
        assert table is not None
        try:
            rows = table.read()  # the others' levels, before this process's shares join
        except Exception as exc:  # advice only: the shares then join at their own level
            logger.warning("demand table of %r: %s", self.limit_name, exc)
        else:
            with self._lock:
                self._set_rows(rows, time.monotonic())
        while True:
            with self._lock:
                self._level_new_shares()
                mine = self._queue.demands(self.participant, self.max_slots)
                idle = not mine and self._held == 0
                if idle:
                    self._coordinating = False
            try:
                rows = table.publish(self.participant, mine)  # an empty list withdraws this process
            except Exception as exc:  # advice only: keep the last view and try again
                logger.warning("demand table of %r: %s", self.limit_name, exc)
            else:
                with self._lock:
                    self._set_rows(rows, time.monotonic())
                    self._yielded_since_refresh = 0
                self._news.set()
            if idle:
                return
            # At most one write per refresh_s, however busy; except when a holder took or gave back a
            # slot (``_publish_now``: once per lease, far rarer than generations), which the other
            # processes must see at once to ask for the slot, or to leave it alone.
            if not self._publish_now.wait(self.refresh_s):
                self._refresh_now.wait(self.refresh_s)
            self._publish_now.clear()
            self._refresh_now.clear()


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
