"""The batch's hook step keeps the persona's niche tag when a model's hooks do not all lead with it.

``order_hooks`` by default keeps the tag every hook leads with: right for the offline writer, whose
hooks all lead with the niche tag, but a model-written set may lead with different tags, and the
niche tag would then compete on learned lift like any other (and be dropped when its lift is low).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from support.publishing import make_world

from contentforge.batch import write_piece_hooks
from contentforge.db.analytics import AnalyticsStore
from contentforge.domain.analytics import LearnedWeight
from contentforge.domain.models import Hook, HookStyle, Persona, Platform, Template

NOW = datetime(2026, 3, 2, 6, tzinfo=UTC)


class ModelLikeWriter:
    """Hooks as a model may write them: the niche tag is there, but never in the same place."""

    name = "model-like"

    def write_hooks(
        self, persona: Persona, template: Template, platform: Platform, *, count: int, seed: int
    ) -> list[Hook]:
        tag_sets = [["legday", "fitness", "run"], ["gym", "cardio", "fitness"], ["fitness", "squats", "gym"]]
        styles = [HookStyle.tip, HookStyle.question, HookStyle.story]
        return [
            Hook(style=style, text=f"Leg day number {i} is done 💪", call_to_action="Save this",
                 hashtags=tags, platform=platform)
            for i, (style, tags) in enumerate(zip(styles, tag_sets, strict=True))
        ]  # fmt: skip


def test_a_model_written_hook_set_keeps_the_niche_tag_despite_its_low_lift(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"], hook_platforms=("x",))
    store = AnalyticsStore(world.engine)
    weights = [
        LearnedWeight("hashtag", "fitness", 0.5, 0.45, 0.55, 40),  # measurably weak: dropped unless required
        LearnedWeight("hashtag", "legday", 2.0, 1.9, 2.1, 40),
    ]
    store.save_weights("mia", "instagram", weights, simulated=False, computed_at=NOW)
    piece, persona = world.repo.get_piece("p00"), world.repo.get_persona("mia")
    assert piece is not None and persona is not None and persona.niche == "fitness"

    write_piece_hooks(piece, persona, Platform.instagram, ModelLikeWriter(), world.repo)  # type: ignore[arg-type]

    saved = [h for h in world.repo.get_piece("p00").hooks if h.platform == Platform.instagram]  # type: ignore[union-attr]
    assert len(saved) == 3
    assert all("fitness" in hook.hashtags for hook in saved), [hook.hashtags for hook in saved]
    assert all("legday" in hook.hashtags for hook in saved)  # the ranking still ran
    decision = store.feedback_of("p00")
    assert decision is not None
    assert decision["hooks:instagram"]["hashtags"]["required"] == ["fitness"]
    assert "fitness" not in decision["hooks:instagram"]["hashtags"]["dropped"]
