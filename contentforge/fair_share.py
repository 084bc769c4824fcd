"""Who should hold the slots of a shared limit: priorities first, then equal progress between batches.

Why pure logic here: every process that competes for the ``image-generation`` slots reads the same
table of demands (``contentforge.db.turns``) and must reach the same answer on its own, without a
coordinator; and the rules are easier to test (and to reason about) without threads, clocks or a
Prefect server. ``tasks/dispatch.py`` only acts on what this module decides: it asks the server for a
slot when ``SplitView.may_ask`` says so and gives one back when ``SplitView.should_yield`` does.

The rule, in order:

1. Priority classes are served strictly: ``high`` shares get the slots they can use before any
   ``normal`` share gets one, and ``low`` shares only what is left.
2. Within a class, the slots go to the shares that have progressed least (water-filling on the
   generations each has started): one slot at a time to the hungry share whose served count, plus
   ``quantum`` for each slot already given it, is lowest. Equal shares then hold an even
   split, the remainder of an uneven one (5 slots, 3 batches) moving to whoever is behind; a share that
   fell behind (its process waited seconds for the Prefect server) holds more until it is level
   again, so equal batches advance at the same pace instead of first-come-keeps-all.

A share that joins a running rotation starts level with the least served share of its priority
(``LocalQueue.level``): it takes its turns from then on, it does not catch up on the past.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from contentforge.errors import InvalidInput

PRIORITIES = ("high", "normal", "low")
"""Priority names, most urgent first; a priority's rank is its index (0 = high)."""
DEFAULT_PRIORITY = "normal"
FAIR_QUANTUM = 2
"""A slot is worth this many generations in the split: a share must fall this far behind another before
a slot moves to it, so slots move between processes every few generations rather than after each (each
move costs a release and an acquisition)."""


def priority_rank(priority: str) -> int:
    """The rank of a priority name (0 = most urgent); ``InvalidInput`` in one line if it is unknown."""
    try:
        return PRIORITIES.index(priority)
    except ValueError:
        raise InvalidInput(f"unknown priority {priority!r}: choose one of {', '.join(PRIORITIES)}") from None


@dataclass(frozen=True)
class ShareDemand:
    """What one share (one batch's generations in one process) wants from a limit right now."""

    participant: str
    """The process-side dispatcher that runs the share's generations."""
    share: str
    rank: int
    """Priority rank (0 = high)."""
    waiting: int
    """Generations queued, not started (at most as many as the process could start at once)."""
    running: int
    """Generations running inside a slot."""
    served: int
    """Generations started so far (from the level it joined at): how far the share has progressed."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.participant, self.share)

    @property
    def wants(self) -> int:
        return self.waiting + self.running


def slot_targets(demands: Iterable[ShareDemand], limit: int, quantum: int = 1) -> dict[tuple[str, str], int]:
    """How many of ``limit`` slots each share should hold, keyed by (participant, share).

    Water-filling within a priority class: each slot goes to the hungry share (one that can use another
    slot) lowest in ``served + quantum * slots given``, ties to the least served, then by name. So a
    share ``quantum`` generations behind another holds one slot more, and one far behind holds them all
    until it is level again.
    Deterministic for a given set of demands, whatever their order, so every process computes the same
    split from the same table.
    """
    targets: dict[tuple[str, str], int] = {}
    left = limit
    by_rank: dict[int, list[ShareDemand]] = {}
    for demand in demands:
        targets[demand.key] = 0
        if demand.wants > 0:
            by_rank.setdefault(demand.rank, []).append(demand)
    for rank in sorted(by_rank):
        shares = by_rank[rank]
        while left > 0:
            hungry = [d for d in shares if targets[d.key] < d.wants]
            if not hungry:
                break
            chosen = min(
                hungry,
                key=lambda d: (d.served + quantum * targets[d.key], d.served, d.participant, d.share),
            )
            targets[chosen.key] += 1
            left -= 1
    return targets


def participant_target(targets: dict[tuple[str, str], int], participant: str) -> int:
    """The slots one participant should hold: the sum of its shares' targets."""
    return sum(n for (who, _), n in targets.items() if who == participant)


def unserved_above(demands: Iterable[ShareDemand], targets: dict[tuple[str, str], int], rank: int) -> int:
    """Slots that shares more urgent than ``rank`` should hold but do not run yet: a holder serving
    ``rank`` work gives its slot back while this is above zero, so they get the next free slot."""
    return sum(max(0, targets.get(d.key, 0) - d.running) for d in demands if d.rank < rank)


def join_level(rows: Iterable[ShareDemand], rank: int, participant: str) -> int:
    """The served count a share joining at ``rank`` starts from: the least served share of that rank
    that other participants still run or wait for (0 when there is none)."""
    return min(
        (r.served for r in rows if r.participant != participant and r.rank == rank and r.wants > 0),
        default=0,
    )


@dataclass(frozen=True)
class SplitView:
    """The split of a limit as one participant sees it, from the demand rows it last read.

    The targets come from the rows as last read, the participant's own included, so that every
    participant computes them from the same table; counting its own fresher numbers against the others'
    older ones would make each think itself the most served and give slots away that nobody then asks
    for. Before its own first write, its local numbers stand in (``of``).
    """

    participant: str
    targets: dict[tuple[str, str], int]
    others: tuple[ShareDemand, ...]
    held: int
    """Slots this participant holds right now (its own count, not the table's)."""
    limit: int

    @classmethod
    def of(
        cls,
        rows: Sequence[ShareDemand],
        own: Sequence[ShareDemand],
        participant: str,
        held: int,
        limit: int,
        quantum: int = FAIR_QUANTUM,
    ) -> SplitView:
        view = list(rows)
        if not any(row.participant == participant for row in view):
            view += own
        others = tuple(row for row in view if row.participant != participant)
        return cls(participant, slot_targets(view, limit, quantum=quantum), others, held, limit)

    @property
    def mine(self) -> int:
        """The slots this participant should hold."""
        return participant_target(self.targets, self.participant)

    def _running_by_participant(self) -> Counter[str]:
        running: Counter[str] = Counter()
        for row in self.others:
            running[row.participant] += row.running
        return running

    @property
    def owed(self) -> int:
        """Slots the other participants should hold but do not run yet."""
        running = self._running_by_participant()
        owed = sum(max(0, participant_target(self.targets, who) - n) for who, n in running.items())
        return owed + sum(self.targets[row.key] for row in self.others if row.participant not in running)

    @property
    def free(self) -> int:
        """Slots of the limit nobody holds, as far as the table knows."""
        return self.limit - sum(row.running for row in self.others) - self.held

    def may_ask(self, top_rank: int | None) -> bool:
        """Whether the split entitles this participant to one more slot for work of ``top_rank``.

        It does when no more urgent share elsewhere is owed the slot, and either it holds fewer than its
        target or a slot is free that no other participant is owed (so none idles).
        """
        if top_rank is not None and unserved_above(self.others, self.targets, top_rank) > 0:
            return False
        return self.held < self.mine or self.free > self.owed

    def should_yield(self, top_rank: int | None, served: int, yielded: int, fair: bool = True) -> bool:
        """Whether a holder between two items gives its slot back.

        ``served``: this participant's generations started; ``yielded``: slots it already gave back since
        the rows were read (each one pays one debt). It yields when a more urgent share elsewhere waits
        (whichever holder finishes first, so that share takes the next free slot), or when another
        participant is owed a slot and this one is the one to give it: the most above its target, then the
        most served. Naming one giver keeps two participants from both giving a slot back for the same
        debt (then one slot would idle until asked for).
        ``fair=False``: only for more urgent work, not to even out equal shares.
        """
        if top_rank is None:
            return False  # nothing here to run: the holder lingers, then releases
        if unserved_above(self.others, self.targets, top_rank) > yielded:
            return True
        if not fair or self.owed <= yielded:
            return False
        excess: Counter[str] = Counter({self.participant: self.held - self.mine})
        progress: Counter[str] = Counter({self.participant: served})
        for row in self.others:
            excess[row.participant] += row.running
            progress[row.participant] += row.served
        for who in {row.participant for row in self.others}:
            excess[who] -= participant_target(self.targets, who)
        giver = max(excess, key=lambda who: (excess[who], progress[who], who))
        return giver == self.participant and excess[giver] > 0

    def recipient(self, top_rank: int | None) -> str | None:
        """The other participant a slot given back for more urgent work than ``top_rank`` is owed to:
        the one with a share more urgent than it that should hold more slots than it runs, most urgent
        first, then the share short of the most slots, then by name (deterministic: two givers pick the
        same one). None for a slot given back to even out equal shares.

        The giver hands such a slot to it directly (``contentforge.db.slot_offers``) instead of
        releasing it to whoever asks the server first. Slots moved between equal shares are released:
        no one waits on them as urgently, and an offer not taken idles the slot while it is open.
        """
        if top_rank is None:
            return None
        short = [
            (row.rank, -(self.targets[row.key] - row.running), row.participant)
            for row in self.others
            if row.rank < top_rank and self.targets.get(row.key, 0) > row.running
        ]
        return min(short)[2] if short else None


@dataclass
class QueuedWork:
    """One callable waiting for a slot, and the future its caller waits on."""

    future: Future[Any]
    fn: Callable[[], Any]
    rank: int
    share: str
    seq: int


@dataclass
class LocalQueue:
    """Work waiting in one process: most urgent priority first, then the least served share.

    Not thread-safe on its own: the dispatcher calls it under its lock.
    """

    waiting: dict[tuple[int, str], deque[QueuedWork]] = field(default_factory=dict)
    served: Counter[str] = field(default_factory=Counter)
    running: Counter[str] = field(default_factory=Counter)
    ranks: dict[str, int] = field(default_factory=dict)
    seq: int = 0

    def put(self, future: Future[Any], fn: Callable[[], Any], rank: int, share: str) -> None:
        active = {s for _, s in self.waiting} | set(self.running)
        if share not in active and active:
            # A batch that (re)joins starts level with the least served active one (as in start-time
            # fair queueing): it takes its turn in the rotation, it does not catch up on the past.
            self.level(share, min(self.served[s] for s in active))
        self.seq += 1
        self.waiting.setdefault((rank, share), deque()).append(QueuedWork(future, fn, rank, share, self.seq))
        self.ranks[share] = min(rank, self.ranks.get(share, rank))

    def level(self, share: str, served: int) -> None:
        """Count ``share`` as served at least ``served`` times (it joins a rotation at that level)."""
        self.served[share] = max(self.served[share], served)

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

    def take(self) -> QueuedWork | None:
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

    def done(self, work: QueuedWork) -> None:
        self.running[work.share] -= 1
        if self.running[work.share] <= 0:
            del self.running[work.share]

    def demands(self, participant: str, capacity: int) -> list[ShareDemand]:
        """This process's shares as rows of the demand table.

        ``capacity``: the most slots this process holds at once. A share advertises no more waiting work
        than it could start, so the split never gives it a slot it cannot use (a CPU pipeline's process
        holds fewer slots than the limit) while the others stand back for it.
        """
        self._prune()
        waiting: Counter[tuple[int, str]] = Counter()
        for (rank, share), items in self.waiting.items():
            waiting[(rank, share)] += sum(not work.future.cancelled() for work in items)
        shares = {share for _, share in waiting} | set(self.running)
        rows = []
        for share in sorted(shares):
            ranks = [rank for rank, s in waiting if s == share and waiting[(rank, s)]]
            rank = min(ranks) if ranks else self.ranks.get(share, priority_rank(DEFAULT_PRIORITY))
            queued = sum(n for (_, s), n in waiting.items() if s == share)
            rows.append(
                ShareDemand(
                    participant=participant,
                    share=share,
                    rank=rank,
                    waiting=min(queued, max(0, capacity - self.running[share])),
                    running=self.running[share],
                    served=self.served[share],
                )
            )
        return rows
