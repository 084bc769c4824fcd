"""The split of a limit's slots (``contentforge.fair_share``) as pure logic: no server, no threads, no clock.

Every process computes the split on its own from the same demand rows, so each rule is checked on
rows as the table would hold them: strict priorities, equal progress between batches of one priority
(the remainder of an uneven split, and a batch that fell behind), who asks for a slot, who gives one
back, and the process-local queue.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest

from contentforge.errors import InvalidInput
from contentforge.fair_share import (
    LocalQueue,
    ShareDemand,
    SplitView,
    join_level,
    participant_target,
    priority_rank,
    slot_targets,
    unserved_above,
)


def _demand(
    participant: str, share: str, rank: int = 1, waiting: int = 50, running: int = 0, served: int = 0
) -> ShareDemand:
    return ShareDemand(participant, share, rank, waiting, running, served)


def test_unknown_priority_is_refused_in_one_line() -> None:
    assert [priority_rank(p) for p in ("high", "normal", "low")] == [0, 1, 2]
    with pytest.raises(InvalidInput) as refused:
        priority_rank("urgent")
    assert str(refused.value) == "unknown priority 'urgent': choose one of high, normal, low"


def test_high_shares_are_served_before_normal_and_low_gets_what_is_left() -> None:
    demands = [
        _demand("p1", "a", rank=1),
        _demand("p2", "b", rank=2),
        _demand("p3", "h", rank=0, waiting=2),
    ]
    targets = slot_targets(demands, 5)
    assert targets == {("p3", "h"): 2, ("p1", "a"): 3, ("p2", "b"): 0}
    # The normal share holding all 5 is owed nothing to; the high one is owed 2 until it runs them.
    assert unserved_above([d for d in demands if d.participant != "p1"], targets, rank=1) == 2
    assert unserved_above(demands, targets, rank=0) == 0


def test_equal_shares_split_evenly_and_the_remainder_goes_to_the_least_served() -> None:
    demands = [_demand("p1", "a", served=10), _demand("p2", "b", served=9), _demand("p3", "c", served=10)]
    assert slot_targets(demands, 5, quantum=2) == {("p1", "a"): 2, ("p2", "b"): 2, ("p3", "c"): 1}
    assert slot_targets(list(reversed(demands)), 5, quantum=2) == slot_targets(demands, 5, quantum=2), (
        "order must not matter"
    )
    # Once the served counts move, the remainder moves with them: no first-come-keeps-all.
    later = [_demand("p1", "a", served=13), _demand("p2", "b", served=14), _demand("p3", "c", served=12)]
    assert slot_targets(later, 5, quantum=2) == {("p1", "a"): 2, ("p2", "b"): 1, ("p3", "c"): 2}


def test_a_batch_that_fell_behind_holds_more_slots_until_it_is_level_again() -> None:
    """Its process waited seconds for the Prefect server: an even split would keep it behind for good."""
    behind = [_demand("p1", "a", served=14), _demand("p2", "b", served=14), _demand("p3", "c", served=10)]
    assert slot_targets(behind, 5, quantum=2) == {("p1", "a"): 1, ("p2", "b"): 1, ("p3", "c"): 3}
    far_behind = [_demand("p1", "a", served=20), _demand("p2", "b", served=20), _demand("p3", "c", served=0)]
    assert slot_targets(far_behind, 5, quantum=2) == {("p1", "a"): 0, ("p2", "b"): 0, ("p3", "c"): 5}


def test_a_share_gets_no_more_than_it_can_use_and_the_rest_is_not_left_idle() -> None:
    demands = [_demand("p1", "a", waiting=1), _demand("p2", "b", waiting=30), _demand("p3", "c", waiting=0)]
    assert slot_targets(demands, 5) == {("p1", "a"): 1, ("p2", "b"): 4, ("p3", "c"): 0}


def test_a_joining_batch_starts_level_with_the_least_served_of_its_priority_elsewhere() -> None:
    rows = [
        _demand("p1", "a", served=30),
        _demand("p2", "b", served=24),
        _demand("p2", "done", served=2, waiting=0),  # finished: not in the rotation any more
        _demand("p3", "h", rank=0, served=1),
        _demand("me", "mine", served=0),
    ]
    assert join_level(rows, rank=1, participant="me") == 24
    assert join_level(rows, rank=2, participant="me") == 0, "nobody at that priority: from zero"


def test_a_process_asks_only_while_below_its_target_or_for_a_slot_nobody_is_owed() -> None:
    rows = [_demand("p1", "a", running=2, served=10), _demand("p2", "b", running=2, served=10)]
    own = [_demand("me", "c", served=11)]
    view = SplitView.of(rows, own, "me", held=0, limit=5)
    assert view.mine == 1 and view.free == 1 and view.owed == 0
    assert view.may_ask(top_rank=1)
    assert not SplitView.of(rows, own, "me", held=1, limit=5).may_ask(top_rank=1), "at its target, none free"
    # A high share elsewhere that does not run yet is owed the next slot: a normal process must not ask.
    urgent = [*rows, _demand("p3", "h", rank=0, waiting=1)]
    assert not SplitView.of(urgent, own, "me", held=0, limit=5).may_ask(top_rank=1)
    assert SplitView.of(urgent, [_demand("me", "h2", rank=0)], "me", held=0, limit=5).may_ask(top_rank=0)


def test_one_process_gives_a_slot_back_per_debt_the_one_most_above_its_target() -> None:
    # p1 runs 3 where the split gives it none (it is far ahead); "me" runs 2 of its 2; p3 is owed 3.
    rows = [
        _demand("p1", "a", running=3, served=16),
        _demand("me", "b", running=2, served=10),
        _demand("p3", "c", running=0, served=8),
    ]
    own = [_demand("me", "b", running=2, served=10)]
    me = SplitView.of(rows, own, "me", held=2, limit=5)
    p1 = SplitView.of(rows, [], "p1", held=3, limit=5)
    assert participant_target(p1.targets, "p3") == 3 and me.owed == 3
    assert not me.should_yield(top_rank=1, served=10, yielded=0), "p1 is the one above its target"
    assert p1.should_yield(top_rank=1, served=16, yielded=0)
    assert p1.should_yield(top_rank=1, served=16, yielded=2), "three slots are owed"
    assert not p1.should_yield(top_rank=1, served=16, yielded=3), "each debt is paid once until the next read"
    assert not p1.should_yield(top_rank=None, served=16, yielded=0), "nothing to run: it lingers, releases"


def test_every_holder_of_normal_work_gives_way_to_a_waiting_high_share() -> None:
    rows = [_demand("me", "a", running=5, served=20), _demand("p2", "h", rank=0, waiting=1)]
    view = SplitView.of(rows, [], "me", held=5, limit=5)
    assert view.should_yield(top_rank=1, served=20, yielded=0)
    assert not view.should_yield(top_rank=1, served=20, yielded=1), "one slot for its one generation"


def test_a_slot_given_back_for_more_urgent_work_goes_to_the_most_urgent_share_short_of_slots() -> None:
    rows = [
        _demand("me", "a", rank=2, running=5, served=20),
        _demand("p2", "n", waiting=50, served=0),  # owed slots at normal priority
        _demand("p3", "h", rank=0, waiting=1),  # owed one at high priority
        _demand("p4", "h", rank=0, waiting=1),
    ]
    view = SplitView.of(rows, [], "me", held=5, limit=5)
    assert view.recipient(top_rank=2) == "p3", "high before normal, then by name among equals"
    served = [*rows[:2], _demand("p3", "h", rank=0, waiting=0, running=1)]
    assert SplitView.of(served, [], "me", held=4, limit=5).recipient(top_rank=2) == "p2", "p3 runs its one"
    assert SplitView.of(served, [], "me", held=4, limit=5).recipient(top_rank=1) is None, "p2 is as urgent"
    assert view.recipient(top_rank=None) is None, "nothing left to run here: the slot is released"
    short = [
        _demand("me", "a", rank=1, running=3, served=30),
        _demand("p2", "b", rank=0, waiting=3, running=1, served=10),
        _demand("p4", "c", rank=0, waiting=1, running=0, served=12),
    ]
    assert SplitView.of(short, [], "me", held=3, limit=5).recipient(top_rank=1) == "p2", "short of the most"


def test_the_local_queue_takes_high_first_then_round_robin_between_batches() -> None:
    local = LocalQueue()
    for share, count in (("first", 4), ("second", 2)):
        for _ in range(count):
            local.put(Future(), lambda: None, 1, share)
    dropped: Future[Any] = Future()
    local.put(dropped, lambda: None, 0, "cancelled")
    local.put(Future(), lambda: None, 0, "urgent")
    assert dropped.cancel()
    order = []
    while (work := local.take()) is not None:
        order.append(work.share)
        local.done(work)
    # FIFO would give first x4 then second x2; the cancelled work is never taken.
    assert order == ["urgent", "first", "second", "first", "second", "first", "first"]


def test_the_local_queue_advertises_no_more_waiting_work_than_the_process_can_start() -> None:
    local = LocalQueue()
    for _ in range(10):
        local.put(Future(), lambda: None, 1, "batch")
    running = local.take()
    assert running is not None
    local.level("batch", 7)  # joined a rotation whose least served batch had started 7
    [row] = local.demands("me", capacity=2)
    assert (row.waiting, row.running, row.served) == (1, 1, 7)
    assert local.cancel_share("batch") == 9 and local.demands("me", capacity=2)[0].waiting == 0
