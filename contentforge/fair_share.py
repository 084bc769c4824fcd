"""Who should hold the slots of a shared limit: priorities first, then equal shares, least served first.

Why a pure function: every process that competes for the ``image-generation`` slots reads the same
table of demands (``contentforge.db.turns``) and must reach the same answer on its own, without a
coordinator. Given the demands, ``slot_targets`` says how many slots each share (a batch, in one
process) should hold right now; a process then holds no more than the sum of its shares' targets
(``tasks/dispatch.py`` acts on it).

The rule, in order:

1. Priority classes are served strictly: ``high`` shares get the slots they can use before any
   ``normal`` share gets one, and ``low`` shares only what is left.
2. Within a class, slots are split evenly between the shares (max-min fair, capped at what a share can
   use: its waiting plus running generations); the remainder of an uneven split (5 slots, 3 batches)
   goes to the shares served least so far. As the served counts move, the remainder moves with them,
   so over a run equal batches advance at the same pace instead of first-come-keeps-all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from contentforge.errors import InvalidInput

PRIORITIES = ("high", "normal", "low")
"""Priority names, most urgent first; a priority's rank is its index (0 = high)."""
DEFAULT_PRIORITY = "normal"


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
    """Generations queued, not started."""
    running: int
    """Generations running inside a slot."""
    served: int
    """Generations started so far: the tie-break that rotates an uneven split."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.participant, self.share)

    @property
    def wants(self) -> int:
        return self.waiting + self.running


def slot_targets(demands: Iterable[ShareDemand], limit: int, quantum: int = 1) -> dict[tuple[str, str], int]:
    """How many of ``limit`` slots each share should hold, keyed by (participant, share).

    ``quantum``: served counts are compared in steps of this many (``served // quantum``), so the
    remainder of an uneven split changes hands every ``quantum`` generations, not after each one.
    Deterministic for a given set of demands, whatever their order, so every process computes the
    same split from the same table.
    """
    targets: dict[tuple[str, str], int] = {}
    left = limit
    by_rank: dict[int, list[ShareDemand]] = {}
    for demand in demands:
        targets[demand.key] = 0
        if demand.wants > 0:
            by_rank.setdefault(demand.rank, []).append(demand)
    for rank in sorted(by_rank):
        shares = sorted(by_rank[rank], key=lambda d: (d.served // quantum, d.participant, d.share))
        while left > 0:
            hungry = [d for d in shares if targets[d.key] < d.wants]
            if not hungry:
                break
            # One slot to the share holding the fewest targets, least served first (a stable sort).
            chosen = min(hungry, key=lambda d: targets[d.key])
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
