"""The analytics API and page: token required, simulated data labelled, plots as PNG, the gallery's CSP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contentforge.analytics.learn import learn_account
from contentforge.analytics.learning_cache import LearningCache
from contentforge.analytics.simulator import PlantedEffects, simulate_account
from contentforge.config import Settings
from contentforge.db.analytics import AnalyticsStore
from contentforge_api.app import create_app
from contentforge_api.gallery import GALLERY_CSP

TOKEN = "analytics-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
END = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("analytics-api")
    settings = Settings(_env_file=None, data_dir=data_dir, api_token=TOKEN)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as test_client:
        store = AnalyticsStore(test_client.app.state.contentforge.services.sessions)  # type: ignore[attr-defined]
        sim = simulate_account(
            "sim-api", days=60, end=END, seed=2, posts_per_day=2,
            effects=PlantedEffects(drop_start=(END - timedelta(days=15)).date()),
        )  # fmt: skip
        store.record(sim.observations)
        store.record_account_days(sim.days)
        store.add_alert(
            "sim-api", "instagram", "reach_drop", sim.effects.drop_start, {"depth": 0.3}, simulated=True
        )  # type: ignore[arg-type]
        yield test_client


def test_analytics_endpoints_need_a_token(client: TestClient) -> None:
    for path in ("/api/v1/analytics/accounts", "/api/v1/analytics/alerts",
                 "/api/v1/analytics/accounts/instagram/sim-api",
                 "/api/v1/analytics/accounts/instagram/sim-api/plots/reach.png"):  # fmt: skip
        assert client.get(path).status_code == 401, path


def test_accounts_summary_and_alerts_say_simulated(client: TestClient) -> None:
    [account] = client.get("/api/v1/analytics/accounts", headers=AUTH).json()["items"]
    assert account == {
        "account": "sim-api",
        "platform": "instagram",
        "simulated": True,
        "posts": account["posts"],
    }
    summary = client.get("/api/v1/analytics/accounts/instagram/sim-api", headers=AUTH).json()
    assert (
        summary["simulated"] and summary["timing"]["enough"] and abs(summary["timing"]["best_hour"] - 19) <= 1
    )
    assert summary["rankings"]["hashtag"]["ranked"][0]["key"] == "gymtok"
    assert summary["drops"]["found"] and summary["model"].startswith(("used", "not used"))
    alerts = client.get("/api/v1/analytics/alerts", headers=AUTH).json()
    assert alerts["alerts"][0]["simulated"] is True and alerts["pauses"] == []
    assert client.get("/api/v1/analytics/accounts/instagram/nobody", headers=AUTH).status_code == 404
    assert client.get("/api/v1/analytics/accounts/myspace/sim-api", headers=AUTH).status_code == 422


def test_plots_are_png_and_the_page_is_a_data_free_shell_under_the_gallery_csp(client: TestClient) -> None:
    image = client.get("/api/v1/analytics/accounts/instagram/sim-api/plots/best-times.png", headers=AUTH)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content[:4] == b"\x89PNG"
    page = client.get("/analytics")
    assert page.status_code == 200 and page.headers["content-security-policy"] == GALLERY_CSP
    assert "sim-api" not in page.text and '<script src="/analytics/static/analytics.js"' in page.text
    script = client.get("/analytics/static/analytics.js")
    assert script.status_code == 200 and "innerHTML" not in script.text and "textContent" in script.text
    assert client.get("/analytics/static/secrets.env").status_code == 404


def test_a_page_view_learns_once_and_new_data_learns_again(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Summary and four plots share one learning; only a change of the data learns again (finding 12)."""
    from contentforge_api.routes import analytics as routes

    learned: list[str] = []

    def counting_learn_account(*args: Any, **kwargs: Any) -> Any:
        learned.append(kwargs["account"])
        return learn_account(*args, **kwargs)

    monkeypatch.setattr(routes, "learn_account", counting_learn_account)
    base = "/api/v1/analytics/accounts/instagram/sim-api"
    paths = [base, *(f"{base}/plots/{name}.png" for name in routes.PLOT_NAMES)]

    def view_page() -> None:
        for path in paths:
            assert client.get(path, headers=AUTH).status_code in (200, 404), path

    view_page()
    assert len(learned) <= 1  # at most once (an earlier test of this module may have learned it)
    view_page()
    view_page()
    assert len(learned) <= 1
    before = client.get(base, headers=AUTH).json()["posts"]
    store = AnalyticsStore(client.app.state.contentforge.services.sessions)  # type: ignore[attr-defined]
    latest = store.observations("sim-api", "instagram")[-1]
    store.record([replace(latest, likes=(latest.likes or 0) + 500)])  # a snapshot replaced in place
    learned.clear()
    view_page()
    assert learned == ["sim-api"]  # the changed data was learned from, once
    assert client.get(base, headers=AUTH).json()["posts"] == before


def test_concurrent_requests_for_one_account_wait_for_a_single_learning() -> None:
    cache: LearningCache[int] = LearningCache(size=2)
    started = threading.Event()
    calls: list[int] = []

    def slow_learning() -> int:
        calls.append(1)
        started.set()
        time.sleep(0.3)
        return 42

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: cache.get(("mia", "x", "UTC", "d1"), slow_learning), range(4)))
    assert results == [42] * 4 and len(calls) == 1
    cache.get("b", lambda: 1)
    cache.get("c", lambda: 2)  # the oldest entry is dropped beyond ``size``
    assert cache.get(("mia", "x", "UTC", "d1"), lambda: 7) == 7
