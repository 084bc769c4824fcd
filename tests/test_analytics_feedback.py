"""Learned weights change the next batch's template draw, hook order and slots; each piece says why.

Weights are written as a learn run would (real, not simulated: simulated weights never steer a
persona), then the batch path's own functions run: ``plan_pieces``, ``write_piece_hooks`` and
``schedule_batch`` with ``LearnedSlots``. A reach-drop pause defers a claimed publication.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support.publishing import World, make_world

from contentforge.analytics.feedback import (
    LearnedSlots,
    order_hooks,
    record_template_feedback,
    template_weights,
)
from contentforge.analytics.pauses import defer_if_paused, pause_for_alert
from contentforge.batch import BatchRequest, plan_pieces, write_piece_hooks
from contentforge.catalog import load_templates
from contentforge.db.analytics import AnalyticsStore
from contentforge.domain.analytics import LearnedWeight, PostMetrics
from contentforge.domain.models import Hook, HookStyle, Platform, TierMix
from contentforge.publishing.scheduling import parse_slot_times, schedule_batch
from contentforge.text.hooks import OfflineHookWriter

NOW = datetime(2026, 3, 2, 6, tzinfo=UTC)
DEFAULT_SLOTS = parse_slot_times("09:00,13:00,19:00")


def tight(kind: str, key: str, lift: float, n: int = 40) -> LearnedWeight:
    return LearnedWeight(kind, key, lift, lift * 0.95, lift * 1.05, n)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(
        tmp_path, ["ready-safe", "ready-safe", "ready-safe", "generated"], hook_platforms=("x",)
    )


@pytest.fixture
def store(world: World) -> AnalyticsStore:
    return AnalyticsStore(world.engine)


def test_learned_category_lifts_change_the_template_draw_and_each_piece_records_why(
    world: World, store: AnalyticsStore
) -> None:
    persona = world.repo.get_persona("mia")
    assert persona is not None
    categories = {t.id: t.category for t in load_templates()}

    def drawn(weights: dict[str, float] | None) -> Counter[str]:
        """Categories of 4-piece batches over ten seeds (weights order the draw within the niche)."""
        found: Counter[str] = Counter()
        for seed in range(10):
            request = BatchRequest(
                persona, 4, Platform.instagram, TierMix(safe=1.0, suggestive=0.0), seed=seed
            )
            found.update(categories[p.template_id] for p in plan_pieces(request, f"b{seed}", weights=weights))
        return found

    before = drawn(None)
    store.save_weights(
        "mia", "instagram",
        [tight("template_category", "food", 4.0), tight("template_category", "fitness", 0.25)],
        simulated=False, computed_at=NOW,
    )  # fmt: skip
    learned = template_weights(store, "mia", "instagram", load_templates(), seed=5)
    after = drawn(learned.weights)
    assert after["food"] > before["food"] and after["fitness"] < before["fitness"]
    assert learned.draws["food"]["lift"] == 4.0
    assert (
        learned.draws["tech"]["lift"] is None and learned.draws["tech"]["n_posts"] == 0
    )  # untested: explored
    # The decision is recorded on the piece it influenced.
    request = BatchRequest(persona, 1, Platform.instagram, TierMix(safe=1.0, suggestive=0.0), seed=1)
    [plan] = plan_pieces(request, world.batch_id, weights=learned.weights)
    piece = sorted(world.pieces)[0]
    record_template_feedback(store, [replace(plan, piece_id=piece)], learned)
    decision = store.feedback_of(piece)
    assert decision is not None and decision["template"]["category"] == categories[plan.template_id]
    assert "thompson" in decision["template"]["method"] and decision["template"]["draw"] > 0


def test_without_learned_weights_nothing_changes_and_nothing_is_recorded(store: AnalyticsStore) -> None:
    learned = template_weights(store, "mia", "instagram", load_templates(), seed=5)
    assert learned.weights == {}
    hooks = [Hook(style=s, text="t", call_to_action="c", platform=Platform.x) for s in HookStyle]
    ranking = order_hooks(store, "mia", "x", hooks)
    assert ranking.hooks == hooks and ranking.decision is None


def test_learned_hook_lifts_reorder_the_saved_hooks_and_mark_the_first_to_publish(
    world: World, store: AnalyticsStore
) -> None:
    piece_id = sorted(world.pieces)[0]
    piece, persona = world.repo.get_piece(piece_id), world.repo.get_persona("mia")
    assert piece is not None and persona is not None
    template = _template(piece.template_id)
    plain = OfflineHookWriter().write_hooks(persona, template, Platform.instagram, count=5, seed=piece.seed)
    first, last = plain[-1].style.value, plain[0].style.value  # learned: the written order was wrong
    assert first != last
    store.save_weights(
        "mia", "instagram", [tight("hook_style", first, 1.6), tight("hook_style", last, 0.6)],
        simulated=False, computed_at=NOW,
    )  # fmt: skip
    assert write_piece_hooks(piece, persona, Platform.instagram, OfflineHookWriter(), world.repo) == 5
    saved = world.repo.get_piece(piece_id).hooks  # type: ignore[union-attr]
    saved = [h for h in saved if h.platform == Platform.instagram]
    assert sorted(h.text for h in saved) == sorted(h.text for h in plain)  # the same hooks, reordered
    assert saved[0].style.value == first and saved[-1].style.value == last
    decision = store.feedback_of(piece_id)
    assert decision is not None and decision["hooks:instagram"]["publish_first"] == first
    assert decision["hooks:instagram"]["order"] == [h.style.value for h in saved]


def test_hashtags_inside_a_hook_are_chosen_by_their_learned_lift(store: AnalyticsStore) -> None:
    store.save_weights(
        "mia",
        "instagram",
        [tight("hashtag", "legday", 1.5), tight("hashtag", "gym", 0.7)],
        simulated=False,
        computed_at=NOW,
    )
    hook = Hook(
        style=HookStyle.tip,
        text="t",
        call_to_action="c",
        hashtags=["gym", "run", "legday"],
        platform="instagram",
    )
    [ordered] = order_hooks(store, "mia", "instagram", [hook], required_tags=[]).hooks
    assert ordered.hashtags == ["legday", "run"]  # best first; gym measurably costs reach: left out


def _template(template_id: str):  # type: ignore[no-untyped-def]
    return next(t for t in load_templates() if t.id == template_id)


def _real_history(store: AnalyticsStore, posts: int) -> None:
    store.record(
        [
            PostMetrics("mia", "instagram", f"p{i}", NOW - timedelta(days=i + 2), 24, NOW, "api", likes=10)
            for i in range(posts)
        ]
    )


def test_learned_hours_replace_the_configured_slots_and_each_slot_records_its_lift(
    world: World, store: AnalyticsStore
) -> None:
    _real_history(store, 40)
    cells = [
        tight("hour_of_week", str(d * 24 + h), {8: 2.2, 20: 2.0}.get(h, 0.8))
        for d in range(7)
        for h in range(24)
    ]
    store.save_weights("mia", "instagram", cells, simulated=False, computed_at=NOW)
    learned = LearnedSlots(store, default=parse_slot_times("09:00,13:00,19:00"), daily_limit=2, seed=1)
    outcome = schedule_batch(
        world.ledger, world.batch_id, ["instagram"], start=NOW, slot_times=DEFAULT_SLOTS, daily_limit=2,
        publisher_for=lambda p: "outbox", slot_times_for=learned.slot_times_for,
    )  # fmt: skip
    slots = outcome.slots["instagram"]
    berlin = ZoneInfo("Europe/Berlin")
    assert len(slots) == 3 and {when.astimezone(berlin).hour for _, when in slots} == {8, 20}
    learned.record("mia", "instagram", slots)
    why = store.feedback_of(slots[0][0])
    assert why is not None and "expected lift 2.2" in why["slot:instagram"]["why"]


def test_too_little_history_keeps_the_configured_slots_and_says_so(
    world: World, store: AnalyticsStore
) -> None:
    _real_history(store, 5)
    store.save_weights(
        "mia", "instagram", [tight("hour_of_week", "8", 2.0)], simulated=False, computed_at=NOW
    )
    learned = LearnedSlots(store, default=parse_slot_times("09:00,13:00,19:00"), daily_limit=3, seed=1)
    outcome = schedule_batch(
        world.ledger, world.batch_id, ["instagram"], start=NOW, slot_times=DEFAULT_SLOTS, daily_limit=3,
        publisher_for=lambda p: "outbox", slot_times_for=learned.slot_times_for,
    )  # fmt: skip
    slots = outcome.slots["instagram"]
    assert {when.astimezone(ZoneInfo("Europe/Berlin")).hour for _, when in slots} == {9, 13, 19}
    learned.record("mia", "instagram", slots)
    why = store.feedback_of(slots[0][0])
    assert why is not None and why["slot:instagram"]["why"] == "default: only 5 posts (at least 30 needed)"


def test_a_reach_drop_pause_defers_publishing_until_it_ends_or_is_resumed(
    world: World, store: AnalyticsStore
) -> None:
    piece = sorted(world.pieces)[0]
    world.ledger.schedule(piece, "x", NOW, publisher="outbox")
    [claimed] = world.ledger.claim_due(now=NOW + timedelta(minutes=1))
    alert, _ = store.add_alert("mia", "x", "reach_drop", date(2026, 3, 1), {"depth": 0.4}, simulated=False)
    pause = pause_for_alert(store, alert, hours=24, now=NOW)
    assert pause is not None and "reach drop since 2026-03-01 (reach at 40% of baseline" in pause.reason
    outcome = defer_if_paused(world.ledger, store, claimed, now=NOW + timedelta(minutes=2))
    assert outcome is not None and outcome.status == "deferred"
    row = world.ledger.get(claimed.id)
    assert row.status == "scheduled" and row.scheduled_for == NOW + timedelta(hours=24)
    assert "paused until" in (row.last_error or "")
    assert store.resume("mia", "x", by="tester", now=NOW + timedelta(hours=1)) == 1
    [again] = world.ledger.claim_due(now=NOW + timedelta(hours=25))
    assert defer_if_paused(world.ledger, store, again, now=NOW + timedelta(hours=25)) is None
    simulated_alert, _ = store.add_alert("sim", "x", "reach_drop", date(2026, 3, 1), {}, simulated=True)
    assert pause_for_alert(store, simulated_alert, hours=24, now=NOW) is None  # a demo never pauses anyone
