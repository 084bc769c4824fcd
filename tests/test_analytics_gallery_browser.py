"""The review gallery shows each planned piece's predicted engagement, or honestly why there is none,
and the recorded cover with its measured advice: headless Chromium as in test_gallery_browser.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.api import World, build_world
from support.browser import headless_chromium, served_app, wait

from contentforge.analytics.simulator import simulate_account
from contentforge.config import Settings
from contentforge.db.analytics import AnalyticsStore
from contentforge_api import create_app

TOKEN = "gallery-outlook-token-0123456789"


@pytest.fixture()
def world(settings_env: Path) -> World:
    settings = Settings(_env_file=None, data_dir=settings_env, api_token=TOKEN, image_profile="fixed-latency")
    return build_world(settings)


def _outlook(driver: Any, ready: Any) -> tuple[dict[str, str], dict[str, str]] | None:
    """Each card's prediction and cover line, read in one script, once ``ready(predictions)`` holds."""
    both = driver.execute_script(
        "const cards = [...document.querySelectorAll('article.piece')];"
        "const line = (a, s) => (a.querySelector(s) || {}).textContent || '';"
        "return [Object.fromEntries(cards.map(a => [a.dataset.pieceId, line(a, '.prediction')])),"
        "        Object.fromEntries(cards.map(a => [a.dataset.pieceId, line(a, '.cover')]))];"
    )
    predictions, covers = both
    return (predictions, covers) if predictions and ready(predictions) else None


def _open(driver: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/gallery/batches/b1")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "use-token").click()


@pytest.mark.slow
def test_gallery_shows_predictions_or_why_not_and_the_cover(world: World, tmp_path: Path) -> None:
    store = AnalyticsStore(world.repo.engine)
    store.record_feedback(
        "b1-000",
        {"cover:instagram": {"chosen": "b1-000", "candidates": [
            {"piece_id": "b1-000", "score": 0.5, "advice": ["contrast 30% below your top-performing posts"]},
        ]}},
    )  # fmt: skip
    with (
        served_app(create_app(world.settings), "outlook-uvicorn") as url,
        headless_chromium(tmp_path / "chromium-profile", "--window-size=1400,1000") as driver,
    ):
        _open(driver, url)
        # One read of both lines, returned by the wait itself: the gallery redraws its cards (and then
        # their outlook lines) whenever it reloads the batch, so a second read could catch a redraw.
        predictions, cover = wait(driver, lambda d: _outlook(d, lambda lines: all(lines.values())), "no line")
        assert set(predictions.values()) == {
            "no prediction: no metrics for 'ava' on instagram yet: collect or import some first"
        }
        assert cover["b1-000"] == "cover: b1-000 (contrast 30% below your top-performing posts)"
        assert cover["b1-001"] == ""

        sim = simulate_account("ava", days=120, end=datetime(2026, 6, 1, tzinfo=UTC), seed=7, posts_per_day=2)
        store.record(sim.observations)  # labelled simulated: the line says so
        _open(driver, url)
        predictions, _ = wait(
            driver,
            lambda d: _outlook(d, lambda lines: "predicted engagement" in lines.get("b1-000", "")),
            "no number",
        )
        shown = predictions["b1-000"]
        assert shown.endswith("× typical if posted now · from simulated data")
        assert float(shown.split()[2].rstrip("×")) > 0
