"""Image features measure what they claim; cover scoring prefers what the account's best posts look like;
planned pieces get a predicted engagement from a usable model."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from support.publishing import make_world

from contentforge.analytics.cover import score_covers
from contentforge.analytics.frames import normalize, posts_frame
from contentforge.analytics.image_features import image_features
from contentforge.analytics.planned import planned_frame, predict_planned
from contentforge.analytics.prediction import train_engagement_model
from contentforge.analytics.simulator import simulate_account
from contentforge.errors import InvalidInput


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def flat(value: int, size: int = 64) -> bytes:
    return png(np.full((size, size, 3), value))


def noisy(seed: int = 0, spread: int = 120) -> bytes:
    rng = np.random.default_rng(seed)
    return png(np.clip(128 + rng.normal(0, spread / 2, (64, 64, 3)), 0, 255))


def test_features_measure_brightness_contrast_colour_and_sharpness() -> None:
    grey, white = image_features(flat(128)), image_features(flat(240))
    assert grey["contrast"] == 0.0 and grey["sharpness"] == 0.0 and grey["colourfulness"] == 0.0
    assert white["brightness"] > grey["brightness"] > image_features(flat(20))["brightness"]
    stripes = np.zeros((64, 64, 3))
    stripes[:, ::2] = (255, 0, 0)
    stripes[:, 1::2] = (0, 200, 0)
    colourful = image_features(png(stripes))
    assert (
        colourful["colourfulness"] > 0.3
        and colourful["sharpness"] > image_features(noisy(spread=20))["sharpness"]
    )
    assert image_features(noisy())["contrast"] > image_features(noisy(spread=20))["contrast"]


def blocks(low: int, high: int, size: int = 64) -> bytes:
    """Two grey halves: contrast grows with the gap, little fine detail."""
    pixels = np.full((size, size, 3), low)
    pixels[:, size // 2 :] = high
    return png(pixels)


def account_history(n: int = 24) -> pd.DataFrame:
    """Posts whose engagement rose with contrast, their features measured from their images."""
    gaps = np.linspace(0, 100, n).astype(int)
    rows = [image_features(blocks(128 - g, 128 + g)) | {"log_norm": g / 50 - 1.0} for g in gaps]
    return pd.DataFrame(rows)


def test_cover_scoring_prefers_the_top_posts_look_and_says_what_a_weak_one_lacks() -> None:
    ranked = score_covers({"flat": flat(128), "bold": blocks(40, 216)}, account_history())
    assert [c.name for c in ranked] == ["bold", "flat"]
    weak = ranked[1]
    assert any(note.startswith("contrast 100% below your top-performing posts") for note in weak.advice)
    assert "closeness" in weak.method and ranked[0].advice == []


def test_cover_scoring_refuses_without_enough_history() -> None:
    with pytest.raises(InvalidInput, match="at least 8 posts; this account has 3"):
        score_covers({"a": flat(10)}, account_history().head(3))


def test_planned_pieces_get_a_prediction_from_a_usable_model(tmp_path: Path) -> None:
    sim = simulate_account("model", days=120, end=datetime(2026, 6, 1, tzinfo=UTC), seed=7, posts_per_day=2)
    model = train_engagement_model(normalize(posts_frame(sim.observations)))
    assert model.evaluation.usable, model.evaluation.reason
    world = make_world(tmp_path, ["ready-safe", "ready-safe"])
    pieces = world.repo.pieces(batch_id=world.batch_id)
    evening, morning = datetime(2026, 6, 2, 19, tzinfo=UTC), datetime(2026, 6, 2, 3, tzinfo=UTC)
    frame = planned_frame(
        pieces, platform="instagram", timezone="UTC", when_for={pieces[0].id: evening}, default_when=morning,
        image_for=world.storage.get,
    )  # fmt: skip
    assert frame.loc[0, "hook_style"] == "tip" and frame.loc[0, "hashtags"] == ["fitness", "run"]
    assert "brightness" in frame.columns
    predictions = predict_planned(model, frame)
    assert [p.piece_id for p in predictions] == [p.id for p in pieces]
    assert all(p.predicted is not None and p.predicted > 0 for p in predictions)
    assert predictions[0].predicted > predictions[1].predicted  # 19:00 is the planted best hour
