"""The collect-metrics and learn flows on the real Prefect test server.

A real-labelled account whose daily reach collapses three days ago: ``learn`` records the drop,
sends it through the signed notify webhook, pauses the persona on that platform, and ``publish_due``
then defers its due post instead of publishing it. ``collect-metrics`` names the platforms it cannot
collect and why.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from support.publishing import FakeApi, Request, Response, make_world, serve

from contentforge.config import get_settings
from contentforge.db.analytics import AnalyticsStore
from contentforge.domain.analytics import AccountDay, PostMetrics
from contentforge.publishing.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

pytestmark = pytest.mark.slow
SECRET = "whsec-analytics-test"


class Receiver(FakeApi):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict] = []  # type: ignore[type-arg]

    def handle(self, request: Request) -> Response:
        from pydantic import SecretStr

        signed = verify(SecretStr(SECRET), request.headers[TIMESTAMP_HEADER.lower()], request.body,
                        request.headers[SIGNATURE_HEADER.lower()])  # fmt: skip
        if not signed:
            return 401, {}, {"error": "bad signature"}
        self.events.append(json.loads(request.body))
        return 200, {}, {}


def real_history_with_a_drop(store: AnalyticsStore, now: datetime) -> None:
    """60 days of an account's own (api) numbers with a weekly rhythm; reach falls to 30% 3 days ago."""
    rng = np.random.default_rng(3)
    days, posts = [], []
    for back in range(60, 0, -1):
        day = (now - timedelta(days=back)).date()
        level = 0.3 if back <= 3 else 1.0
        reach = 10_000 * (1.2 if day.weekday() >= 5 else 1.0) * level * rng.lognormal(0, 0.08)
        days.append(AccountDay("mia", "x", day, "api", reach=round(reach)))
        posted = now - timedelta(days=back, hours=-9)
        posts.append(PostMetrics("mia", "x", f"t{back}", posted, 24, posted + timedelta(hours=24), "api",
                                 views=round(reach / 3), likes=int(rng.integers(20, 60)),
                                 features={"hashtags": ["gym"], "hook_style": "tip"}))  # fmt: skip
    store.record(posts)
    store.record_account_days(days)


def test_learn_alerts_through_the_signed_webhook_pauses_and_publish_due_defers(
    settings_env: Path, prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.collect_metrics import collect_metrics
    from flows.learn import learn
    from flows.publish_due import publish_due

    with serve(Receiver()) as receiver:
        monkeypatch.setenv("CONTENTFORGE_WEBHOOK_NOTIFY_URL", f"{receiver.url}/alerts")
        monkeypatch.setenv("CONTENTFORGE_WEBHOOK_SECRET", SECRET)
        monkeypatch.setenv("CONTENTFORGE_ANALYTICS_PAUSE_HOURS", "48")
        get_settings.cache_clear()
        settings = get_settings()
        world = make_world(tmp_path, ["ready-safe"], url=settings.resolved_database_url)
        store = AnalyticsStore(world.engine)
        now = datetime.now(UTC)
        real_history_with_a_drop(store, now)

        result = learn()
        [account] = result["accounts"]
        assert account["account"] == "mia" and not account["simulated"]
        assert (
            account["drops"]
            and abs((now.date() - datetime.fromisoformat(account["drops"][0]).date()).days) <= 4
        )
        assert any("paused mia on x" in a for a in result["alerts"])
        [event] = receiver.events
        assert (
            event["event"] == "analytics.reach_drop" and event["account"] == "mia" and event["paused_until"]
        )
        [alert] = store.alerts("mia")
        assert alert.notified_at is not None
        assert learn()["alerts"] == []  # the same drop is not alerted twice

        world.ledger.schedule(sorted(world.pieces)[0], "x", now - timedelta(minutes=5), publisher="outbox")
        published = publish_due(limit=5)
        assert (published["claimed"], published["deferred"], published["published"]) == (1, 1, 0)
        assert "paused until" in published["outcomes"][0]["error"]

        collected = collect_metrics()
        assert collected["due"] == 0 and collected["snapshots"] == 0

    answer = httpx.post(f"{prefect_server}/artifacts/filter", json={"limit": 50, "sort": "CREATED_DESC"})
    found = {a["key"]: str(a["data"]) for a in reversed(answer.json()) if a["key"]}
    assert "analytics-mia-x" in found and "data:image/png;base64," in found["analytics-mia-x"]
    assert "Reach drops" in found["analytics-mia-x"]
    assert "metrics-collected" in found
