"""Hashtags are chosen by learned lift within each platform's rules, and each piece records why.

The candidates are the piece's own hook variations' tags; the persona's niche tag is kept; the count
never exceeds what the hook had or the platform allows; an untested tag keeps a place (exploration);
a tag whose lift is measurably below 1 is left out; the caption rules still hold.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.publishing import World, make_world

from contentforge.analytics.feedback import choose_hashtags, order_hooks
from contentforge.batch import write_piece_hooks
from contentforge.catalog import load_templates
from contentforge.db.analytics import AnalyticsStore
from contentforge.domain.analytics import LearnedWeight
from contentforge.domain.models import Hook, HookStyle, Platform
from contentforge.text.hooks import OfflineHookWriter
from contentforge.text.platform_rules import check_caption, rules_for

NOW = datetime(2026, 3, 2, 6, tzinfo=UTC)


def tight(key: str, lift: float, n: int = 40) -> LearnedWeight:
    return LearnedWeight("hashtag", key, lift, lift * 0.95, lift * 1.05, n)


def hook(tags: list[str], platform: Platform = Platform.instagram, text: str = "Leg day again 💪") -> Hook:
    return Hook(style=HookStyle.tip, text=text, call_to_action="Save this", hashtags=tags, platform=platform)


POOL = ["fitness", "legday", "gym", "run", "cardio", "squats", "mobility", "protein"]


def test_ranked_tags_replace_weak_ones_and_an_untested_tag_keeps_a_place() -> None:
    learned = {"legday": tight("legday", 2.0), "protein": tight("protein", 1.8), "gym": tight("gym", 0.6)}
    seen: Counter[str] = Counter()
    for seed in range(40):
        written = hook(["fitness", "gym", "run", "cardio", "squats"])
        choice = choose_hashtags(written, POOL, ["fitness"], learned, random.Random(seed))
        assert choice.tags[0] == "fitness" and len(choice.tags) == 5  # niche tag kept, count unchanged
        assert "gym" not in choice.tags and choice.dropped == ["gym"]
        assert len(choice.explored) == 1 and choice.explored[0] not in learned
        assert (
            check_caption(f"{written.text}\n\n{written.call_to_action}", choice.tags, Platform.instagram)
            == []
        )
        seen.update(choice.tags)
    assert seen["legday"] == seen["protein"] == 40  # chosen though this hook was not written with them
    assert {"run", "cardio", "squats", "mobility"} <= set(seen)  # exploration still reaches untested tags


def test_the_platform_limit_holds_and_a_tag_that_breaks_the_caption_is_cut() -> None:
    learned = {"legday": tight("legday", 2.0)}
    on_x = choose_hashtags(hook(["fitness", "run"], Platform.x), POOL, ["fitness"], learned, random.Random(1))
    assert on_x.tags == ["fitness", "legday"] and len(on_x.tags) <= rules_for(Platform.x).max_hashtags
    long_tag = "Extraordinarilylongtagthatnobodyshouldeveruse"
    full = hook(
        ["fitness", "run"], Platform.x, text="x" * 150 + "\n" + "y" * 90 + " 💪"
    )  # only "#fitness #run" still fits 280
    assert check_caption(f"{full.text}\n\n{full.call_to_action}", full.hashtags, Platform.x) == []
    choice = choose_hashtags(
        full, ["fitness", long_tag], ["fitness"], {long_tag.lower(): tight(long_tag, 3.0)}, random.Random(1)
    )
    assert choice.tags == ["fitness"]  # the ranked tag does not fit: cut back, never over the limit


def test_without_learned_hashtags_the_written_tags_stay() -> None:
    written = hook(["fitness", "gym"])
    assert choose_hashtags(written, POOL, ["fitness"], {}, random.Random(1)).tags[0] == "fitness"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path, ["ready-safe"], hook_platforms=("x",))


def test_the_batch_hook_step_saves_the_chosen_tags_and_records_the_weights(world: World) -> None:
    store = AnalyticsStore(world.engine)
    piece_id = sorted(world.pieces)[0]
    piece, persona = world.repo.get_piece(piece_id), world.repo.get_persona("mia")
    assert piece is not None and persona is not None
    template = next(t for t in load_templates() if t.id == piece.template_id)
    written = OfflineHookWriter().write_hooks(persona, template, Platform.instagram, count=5, seed=piece.seed)
    niche = written[0].hashtags[0]
    weak, strong = written[0].hashtags[1], written[0].hashtags[2]
    store.save_weights(
        "mia", "instagram", [tight(weak.lower(), 0.5), tight(strong.lower(), 2.5)],
        simulated=False, computed_at=NOW,
    )  # fmt: skip
    write_piece_hooks(piece, persona, Platform.instagram, OfflineHookWriter(), world.repo)
    saved = [h for h in world.repo.get_piece(piece_id).hooks if h.platform == Platform.instagram]  # type: ignore[union-attr]
    for one in saved:
        assert one.hashtags[0] == niche and weak not in one.hashtags and strong in one.hashtags
        assert check_caption(one.caption, one.hashtags, Platform.instagram) == []
    decision = store.feedback_of(piece_id)
    assert decision is not None
    tags = decision["hooks:instagram"]["hashtags"]
    assert tags["chosen"] == saved[0].hashtags and tags["required"] == [niche] and tags["dropped"] == [weak]
    assert tags["weights"][strong]["lift"] == 2.5 and tags["weights"][strong]["n_posts"] == 40
    assert tags["limit"] == rules_for(Platform.instagram).max_hashtags


def test_order_hooks_keeps_the_tag_every_variation_leads_with(world: World) -> None:
    store = AnalyticsStore(world.engine)
    store.save_weights(
        "mia", "x", [tight("legday", 2.0), tight("fitness", 0.5)], simulated=False, computed_at=NOW
    )
    hooks = [hook(["fitness", tag], Platform.x) for tag in ("run", "legday", "cardio")]
    ranking = order_hooks(store, "mia", "x", hooks)
    assert all(h.hashtags == ["fitness", "legday"] for h in ranking.hooks)  # niche kept despite its lift
    assert ranking.decision is not None and ranking.decision["hashtags"]["required"] == ["fitness"]


def test_the_record_describes_the_hook_published_first_not_a_gate_held_favourite(world: World) -> None:
    store = AnalyticsStore(world.engine)
    story = LearnedWeight("hook_style", "story", 2.0, 1.9, 2.1, 40)
    store.save_weights("mia", "x", [tight("legday", 2.0), story], simulated=False, computed_at=NOW)
    held = hook(["fitness", "legday"], Platform.x).model_copy(
        update={"style": HookStyle.story, "quality_gate": {"status": "needs_review"}}
    )
    plain = hook(["fitness", "cardio"], Platform.x)
    ranking = order_hooks(store, "mia", "x", [plain, held])
    assert ranking.hooks[0].style is HookStyle.story and ranking.decision is not None  # the favourite by lift
    assert ranking.decision["hashtags"]["written"] == [
        "fitness",
        "cardio",
    ]  # the gate-held one never goes out
