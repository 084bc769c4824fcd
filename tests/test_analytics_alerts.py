"""Reach-drop alerts survive a crash or a failed webhook: the next run sends them, pausing once.

The alerts are recorded as ``learn`` records them; the run that recorded them is taken to have died
before acting (nothing sent, nothing paused). Acting then reads what is pending from the database,
against a local notify receiver that fails before it accepts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from support.publishing import FakeApi, Request, Response, serve

from contentforge.analytics.pauses import act_on_pending_alerts
from contentforge.db import make_engine, migrate
from contentforge.db.analytics import AnalyticsStore
from contentforge.outbound import OutboundPolicy
from contentforge.publishing.webhook import WebhookNotifier

NOW = datetime(2026, 3, 10, 6, tzinfo=UTC)


class FlakyReceiver(FakeApi):
    """Answers 503 to the first ``fail_next`` events, then accepts and keeps each event."""

    def __init__(self, fail_next: int) -> None:
        super().__init__()
        self.fail_next = fail_next
        self.events: list[dict] = []  # type: ignore[type-arg]

    def handle(self, request: Request) -> Response:
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503, {}, {"error": "down for maintenance"}
        self.events.append(json.loads(request.body))
        return 200, {}, {}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'a.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_an_alert_a_crashed_or_failed_run_left_is_sent_later_and_pauses_exactly_once(engine: Engine) -> None:
    store = AnalyticsStore(engine)
    day = NOW.date()
    recent, _ = store.add_alert(
        "mia", "x", "reach_drop", day - timedelta(days=3),
        {"detected_on": (day - timedelta(days=1)).isoformat(), "depth": 0.4}, simulated=False,
    )  # fmt: skip
    store.add_alert(  # history found on a first run: recorded, never sent
        "mia", "x", "reach_drop", day - timedelta(days=40),
        {"detected_on": (day - timedelta(days=39)).isoformat()}, simulated=False,
    )  # fmt: skip
    store.add_alert(  # a demo's alert: never sent
        "sim", "x", "reach_drop", day - timedelta(days=2),
        {"detected_on": (day - timedelta(days=1)).isoformat()}, simulated=True,
    )  # fmt: skip
    with serve(FlakyReceiver(fail_next=2)) as receiver:
        notifier = WebhookNotifier(
            f"{receiver.url}/alerts",
            SecretStr("whsec-alerts-test"),
            policy=OutboundPolicy(setting="test", allow_private=True),
        )

        def act(at: datetime) -> list[str]:
            return act_on_pending_alerts(store, notifier=notifier, pause_hours=48, now=at)

        first = act(NOW)  # the crashed run's alert is found; the webhook fails
        assert any(f"alert {recent.id} not sent" in line for line in first)
        [pause] = store.pauses("mia")
        assert pause.paused_until == NOW + timedelta(hours=48) and pause.alert_id == recent.id
        assert [a.id for a in store.pending_alerts(now=NOW)] == [recent.id]

        act(NOW + timedelta(hours=1))  # fails again: the pause is neither extended nor doubled
        assert [p.paused_until for p in store.pauses("mia")] == [NOW + timedelta(hours=48)]

        assert store.resume("mia", "x", by="ops", now=NOW + timedelta(hours=2)) == 1
        sent = act(NOW + timedelta(hours=3))  # accepted now; the person's resume stands
        assert any(f"alert {recent.id} sent" in line for line in sent)
        assert store.active_pause("mia", "x", NOW + timedelta(hours=4)) is None
        assert len(store.pauses("mia")) == 1 and store.pauses("sim") == []
        [event] = receiver.events
        assert (event["account"], event["platform"], event["paused_until"]) == ("mia", "x", None)
        assert store.pending_alerts(now=NOW + timedelta(hours=3)) == []
        assert act(NOW + timedelta(hours=4)) == [] and len(receiver.events) == 1  # sent once
