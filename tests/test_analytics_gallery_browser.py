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


def _lines(driver: Any, selector: str) -> dict[str, str]:
    return driver.execute_script(  # type: ignore[no-any-return]
        "return Object.fromEntries([...document.querySelectorAll('article.piece')].map(a => "
        f"[a.dataset.pieceId, (a.querySelector('{selector}') || {{}}).textContent || '']));"
    )


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
        wait(driver, lambda d: all(_lines(d, ".prediction").values()) and _lines(d, ".prediction"), "no line")
        assert set(_lines(driver, ".prediction").values()) == {
            "no prediction: no metrics for 'ava' on instagram yet: collect or import some first"
        }
        cover = _lines(driver, ".cover")
        assert cover["b1-000"] == "cover: b1-000 (contrast 30% below your top-performing posts)"
        assert cover["b1-001"] == ""

        sim = simulate_account("ava", days=120, end=datetime(2026, 6, 1, tzinfo=UTC), seed=7, posts_per_day=2)
        store.record(sim.observations)  # labelled simulated: the line says so
        _open(driver, url)
        wait(
            driver,
            lambda d: "predicted engagement" in _lines(d, ".prediction").get("b1-000", ""),
            "no number",
        )
        shown = _lines(driver, ".prediction")["b1-000"]
        assert shown.endswith("× typical if posted now · from simulated data")
        assert float(shown.split()[2].rstrip("×")) > 0
