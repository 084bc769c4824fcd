"""Moderation: text rules, the policy's thresholds and tiers, platform rules and the NudeNet backend."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image

from contentforge.config import Settings
from contentforge.domain.models import Platform, Verdict
from contentforge.errors import InvalidInput
from contentforge.moderation import (
    CATEGORIES,
    LABEL_WEIGHTS,
    CategoryScores,
    ModerationInput,
    ModerationPolicy,
    Moderator,
    NudeNetBackend,
    TextRulesBackend,
    build_moderator,
    nudenet_backend,
)

THRESHOLDS = {"sexual": 0.90, "violence": 0.70, "hate": 0.50, "self_harm": 0.50, "harassment": 0.60}


class FixedScores:
    """Test double: a backend that reports the scores it was given."""

    def __init__(self, name: str, scores: dict[str, float], reasons: list[str] | None = None) -> None:
        self.name = name
        self._result = CategoryScores(scores, reasons or [])

    def scores(self, item: ModerationInput) -> CategoryScores:
        return self._result


@pytest.fixture()
def settings() -> Settings:
    return Settings(_env_file=None)


@pytest.fixture()
def policy(settings: Settings) -> ModerationPolicy:
    return ModerationPolicy.from_settings(settings)


def decide(policy: ModerationPolicy, **scores: float):
    return policy.decide([("fake", CategoryScores(scores))])


# --- text rules -------------------------------------------------------------------------------------


def text_moderator(policy: ModerationPolicy) -> Moderator:
    return Moderator([TextRulesBackend()], policy)


def test_explicit_sentence_is_rejected_and_reason_names_the_rule(policy: ModerationPolicy) -> None:
    caption = "New porn video dropping tonight, DM me for the full sex tape"
    verdict = text_moderator(policy).moderate(None, [caption])
    assert verdict.verdict is Verdict.rejected
    assert verdict.scores["sexual"] >= THRESHOLDS["sexual"]
    assert any("sexual" in r and "reject threshold" in r and "text_rules" in r for r in verdict.reasons)
    assert any("'explicit-terms'" in r for r in verdict.reasons)
    assert all(caption not in r and "porn video" not in r for r in verdict.reasons)


def test_fitness_caption_is_safe_with_zero_scores(policy: ModerationPolicy) -> None:
    texts = [
        "Leg day done! 5x5 squats, then a killer finisher. Hydrate, your future self will thank you.",
        "Tag a friend who never skips leg day",
        "#fitness #legday #foodporn #gymlife",
    ]
    verdict = text_moderator(policy).moderate(None, texts)
    assert verdict.verdict is Verdict.safe
    assert verdict.scores == dict.fromkeys(CATEGORIES, 0.0)
    assert verdict.reasons == []


@pytest.mark.parametrize(
    ("text", "category", "expected"),
    [
        ("I’m going to kill you", "violence", Verdict.rejected),  # curly apostrophe is normalised
        ("those people are subhuman", "hate", Verdict.rejected),
        ("some days I want to die", "self_harm", Verdict.rejected),
        ("Suicide prevention month: talk to someone", "self_harm", Verdict.safe),  # a mention stays under
        ("kys", "harassment", Verdict.rejected),
        ("feeling sexy in my new gym set", "sexual", Verdict.suggestive),
        ("full set on my OnlyFans", "sexual", Verdict.restricted),
    ],
)
def test_text_rule_categories(policy: ModerationPolicy, text: str, category: str, expected: Verdict) -> None:
    verdict = text_moderator(policy).moderate(None, [text])
    assert verdict.verdict is expected
    assert verdict.scores[category] > 0.0


def test_distinct_weak_rules_add_up_but_repeats_do_not() -> None:
    backend = TextRulesBackend()
    one = backend.scores(ModerationInput(None, ["what an idiot, idiot, idiot"])).scores["harassment"]
    two = backend.scores(ModerationInput(None, ["you're pathetic, what an idiot"])).scores["harassment"]
    assert one == pytest.approx(0.35)
    assert two == pytest.approx(1 - (1 - 0.45) * (1 - 0.35))
    assert one < THRESHOLDS["harassment"] <= two


def test_word_boundaries_avoid_substring_hits() -> None:
    scores = TextRulesBackend().scores(ModerationInput(None, ["cumulative gains, scumbag-free zone"])).scores
    assert scores["sexual"] == 0.0


# --- policy: thresholds and tiers -------------------------------------------------------------------


@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize(("offset", "rejected"), [(-1e-6, False), (0.0, True), (1e-6, True)])
def test_reject_threshold_edges(
    policy: ModerationPolicy, category: str, offset: float, rejected: bool
) -> None:
    score = THRESHOLDS[category] + offset
    verdict = decide(policy, **{category: score})
    assert (verdict.verdict is Verdict.rejected) is rejected
    assert verdict.scores[category] == pytest.approx(score)
    crossing = [r for r in verdict.reasons if "reject threshold" in r]
    if rejected:
        assert crossing == [
            f"{category} {score:.2f} >= reject threshold {THRESHOLDS[category]:.2f} (from fake)"
        ]
    else:
        assert crossing == []


@pytest.mark.parametrize(
    ("sexual", "expected"),
    [
        (0.0, Verdict.safe),
        (0.399999, Verdict.safe),
        (0.40, Verdict.suggestive),
        (0.699999, Verdict.suggestive),
        (0.70, Verdict.restricted),
        (0.899999, Verdict.restricted),
        (0.90, Verdict.rejected),
    ],
)
def test_sexual_tiers(policy: ModerationPolicy, sexual: float, expected: Verdict) -> None:
    assert decide(policy, sexual=sexual).verdict is expected


def test_non_sexual_scores_below_threshold_do_not_raise_the_tier(policy: ModerationPolicy) -> None:
    verdict = decide(policy, violence=0.69, hate=0.49, self_harm=0.49, harassment=0.59, sexual=0.1)
    assert verdict.verdict is Verdict.safe


def test_thresholds_come_from_settings() -> None:
    custom = Settings(_env_file=None, moderation_violence=0.3, moderation_suggestive=0.2)
    policy = ModerationPolicy.from_settings(custom)
    assert decide(policy, violence=0.3).verdict is Verdict.rejected
    assert decide(policy, sexual=0.2).verdict is Verdict.suggestive


def test_out_of_order_tiers_are_refused() -> None:
    with pytest.raises(InvalidInput, match="suggestive <= restricted"):
        ModerationPolicy.from_settings(Settings(_env_file=None, moderation_suggestive=0.8))


def test_no_backend_scores_is_not_safe(policy: ModerationPolicy) -> None:
    with pytest.raises(ValueError, match="at least one backend"):
        policy.decide([])


@pytest.mark.parametrize(
    "bad", [{"sexual": 1.5}, {"sexual": -0.1}, {"sexual": float("nan")}, {"nudity": 0.5}]
)
def test_backend_scores_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CategoryScores(bad)


# --- combining backends -----------------------------------------------------------------------------


def test_backends_combine_by_max_per_category(policy: ModerationPolicy) -> None:
    image = FixedScores("image", {"sexual": 0.55, "violence": 0.2}, ["image: saw something"])
    text = FixedScores("text", {"sexual": 0.3, "violence": 0.75, "hate": 0.1})
    verdict = Moderator([image, text], policy).moderate(None, ["caption"])
    assert verdict.scores == {
        "sexual": 0.55,
        "violence": 0.75,
        "hate": 0.1,
        "self_harm": 0.0,
        "harassment": 0.0,
    }
    assert verdict.verdict is Verdict.rejected
    assert verdict.reasons[0] == "violence 0.75 >= reject threshold 0.70 (from text)"
    assert "image: saw something" in verdict.reasons
    assert verdict.backends == ["image", "text"]


def test_tier_reason_names_the_backend_with_the_max(policy: ModerationPolicy) -> None:
    verdict = Moderator(
        [FixedScores("a", {"sexual": 0.45}), FixedScores("b", {"sexual": 0.75})], policy
    ).moderate(None)
    assert verdict.verdict is Verdict.restricted
    assert verdict.reasons == ["sexual 0.75 >= restricted bound 0.70 (from b)"]


def test_a_failing_backend_fails_the_piece(policy: ModerationPolicy) -> None:
    class Broken:
        name = "broken"

        def scores(self, item: ModerationInput) -> CategoryScores:
            raise RuntimeError("detector crashed")

    with pytest.raises(RuntimeError, match="detector crashed"):
        Moderator([FixedScores("ok", {}), Broken()], policy).moderate(None, ["hi"])


# --- platform compatibility -------------------------------------------------------------------------

EXPECTED_PLATFORMS = {
    Verdict.safe: set(Platform),
    Verdict.suggestive: {Platform.instagram, Platform.x, Platform.threads, Platform.tiktok},
    Verdict.restricted: set(),
    Verdict.rejected: set(),
}


@pytest.mark.parametrize("verdict", list(Verdict))
@pytest.mark.parametrize("platform", list(Platform))
def test_platform_compatibility(policy: ModerationPolicy, verdict: Verdict, platform: Platform) -> None:
    assert policy.platform_accepts(verdict, platform) is (platform in EXPECTED_PLATFORMS[verdict])


def test_accepted_platforms_for_suggestive_exclude_linkedin(policy: ModerationPolicy) -> None:
    accepted = policy.accepted_platforms(Verdict.suggestive)
    assert Platform.linkedin not in accepted
    assert set(accepted) == EXPECTED_PLATFORMS[Verdict.suggestive]


# --- NudeNet ----------------------------------------------------------------------------------------


def gradient(size: int) -> Image.Image:
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    rgb = np.stack(
        [np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)), np.full((size, size), 90, np.uint8)], -1
    )
    return Image.fromarray(rgb, "RGB")


def noise(size: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(7).integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("image", [gradient(128), noise(512), noise(96).convert("L")])
def test_nudenet_on_a_plain_image_is_safe(policy: ModerationPolicy, image: Image.Image) -> None:
    backend = NudeNetBackend()
    result = backend.scores(ModerationInput(image))
    assert result.scores["sexual"] < 0.2
    verdict = Moderator([backend, TextRulesBackend()], policy).moderate(image, ["Morning run done"])
    assert verdict.verdict is Verdict.safe
    assert verdict.backends == ["nudenet", "text_rules"]


def test_nudenet_without_image_scores_zero() -> None:
    assert NudeNetBackend().scores(ModerationInput(None, ["text only"])).scores == dict.fromkeys(
        CATEGORIES, 0.0
    )


class FakeDetector:
    """Test double for ``nudenet.NudeDetector``: returns canned detections, records what it saw."""

    def __init__(self, detections: list[dict[str, Any]]) -> None:
        self.detections = detections
        self.seen: list[np.ndarray] = []

    def detect(self, image_path: Any) -> list[dict[str, Any]]:
        self.seen.append(image_path)
        return self.detections


def test_nudenet_label_mapping_applies_documented_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDetector(
        [
            {"class": "FACE_FEMALE", "score": 0.99, "box": [0, 0, 1, 1]},
            {"class": "FEMALE_BREAST_COVERED", "score": 0.9, "box": [0, 0, 1, 1]},
            {"class": "BUTTOCKS_EXPOSED", "score": 0.6, "box": [0, 0, 1, 1]},
            {"class": "NEW_LABEL", "score": 0.5, "box": [0, 0, 1, 1]},
        ]
    )
    monkeypatch.setattr(nudenet_backend, "_detector", fake)
    image = Image.new("RGB", (8, 4), (255, 0, 0))
    result = NudeNetBackend().scores(ModerationInput(image))

    assert result.scores["sexual"] == pytest.approx(
        max(0.9 * LABEL_WEIGHTS["FEMALE_BREAST_COVERED"], 0.6 * LABEL_WEIGHTS["BUTTOCKS_EXPOSED"])
    )
    assert result.scores["sexual"] == pytest.approx(0.54)
    assert any("BUTTOCKS_EXPOSED" in r for r in result.reasons)
    assert any("FEMALE_BREAST_COVERED" in r for r in result.reasons)
    assert any("unmapped label NEW_LABEL" in r for r in result.reasons)
    assert not any("FACE_FEMALE" in r for r in result.reasons)
    # The detector gets a BGR uint8 array, as cv2.imread would give it.
    (array,) = fake.seen
    assert array.shape == (4, 8, 3) and array.dtype == np.uint8
    assert tuple(array[0, 0]) == (0, 0, 255)


@pytest.mark.parametrize(
    ("label", "confidence", "expected"),
    [
        ("FEMALE_GENITALIA_EXPOSED", 0.95, Verdict.rejected),
        ("FEMALE_GENITALIA_EXPOSED", 0.75, Verdict.restricted),
        ("FEMALE_BREAST_COVERED", 0.9, Verdict.suggestive),
        ("MALE_BREAST_EXPOSED", 0.99, Verdict.safe),
        ("FEET_EXPOSED", 0.99, Verdict.safe),
    ],
)
def test_nudenet_detections_map_to_verdicts(
    monkeypatch: pytest.MonkeyPatch,
    policy: ModerationPolicy,
    label: str,
    confidence: float,
    expected: Verdict,
) -> None:
    monkeypatch.setattr(nudenet_backend, "_detector", FakeDetector([{"class": label, "score": confidence}]))
    verdict = Moderator([NudeNetBackend()], policy).moderate(Image.new("RGB", (16, 16)))
    assert verdict.verdict is expected


def test_detector_is_loaded_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import nudenet

    constructed: list[object] = []

    class CountingDetector(nudenet.NudeDetector):
        def __init__(self) -> None:
            constructed.append(self)
            super().__init__()

    monkeypatch.setattr(nudenet_backend, "_detector", None)
    monkeypatch.setattr(nudenet, "NudeDetector", CountingDetector)
    first, second = NudeNetBackend(), NudeNetBackend()
    first.scores(ModerationInput(gradient(64)))
    second.scores(ModerationInput(noise(64)))
    assert len(constructed) == 1


def test_shared_detector_uses_one_quiet_thread_and_detects_as_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The detector must not claim the cores generation runs on, and must score exactly as nudenet's own."""
    import nudenet

    monkeypatch.setattr(nudenet_backend, "_detector", None)
    shared = nudenet_backend.shared_detector()
    options = shared.onnx_session.get_session_options()  # type: ignore[attr-defined]
    assert options.intra_op_num_threads == nudenet_backend.DETECTOR_THREADS == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    library_default = nudenet.NudeDetector()
    # The raw model outputs (every candidate box and class score, not just the few above threshold).
    batch = np.random.default_rng(3).random((1, 3, 320, 320), dtype=np.float32)
    ours = shared.onnx_session.run(None, {shared.input_name: batch})  # type: ignore[attr-defined]
    theirs = library_default.onnx_session.run(None, {library_default.input_name: batch})
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-4)


def test_concurrent_first_use_builds_one_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    import nudenet

    constructed: list[object] = []

    class SlowDetector(FakeDetector):
        def __init__(self) -> None:
            time.sleep(0.05)  # widen the race window
            constructed.append(self)
            super().__init__([])

    monkeypatch.setattr(nudenet_backend, "_detector", None)
    monkeypatch.setattr(nudenet, "NudeDetector", SlowDetector)
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        NudeNetBackend().scores(ModerationInput(gradient(16)))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(constructed) == 1


# --- factory ----------------------------------------------------------------------------------------


def test_build_moderator_is_cached_per_policy(settings: Settings) -> None:
    first = build_moderator(settings)
    assert build_moderator(Settings(_env_file=None)) is first
    assert [b.name for b in first.backends] == ["nudenet", "text_rules"]
    stricter = build_moderator(Settings(_env_file=None, moderation_hate=0.2))
    assert stricter is not first
    assert stricter.policy.thresholds["hate"] == 0.2
