"""``contentforge publish schedule`` uses the learned posting hours as the scheduler flow does.

With enough real history the persona's learned hours replace the configured slots and each piece
records why; with too little the configured slots stay and the command says so.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support.publishing import World, make_world
from typer.testing import CliRunner

from contentforge.db.analytics import AnalyticsStore
from contentforge.domain.analytics import LearnedWeight, PostMetrics
from contentforge_cli.main import app

NOW = datetime(2026, 3, 2, 6, tzinfo=UTC)
START = "2026-03-02T06:00+00:00"


def _world(data_dir: Path, tmp_path: Path, history: int) -> tuple[World, AnalyticsStore]:
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(data_dir / 'contentforge.db').resolve()}"
    world = make_world(tmp_path, ["ready-safe", "ready-safe", "ready-safe"], url=url)
    store = AnalyticsStore(world.engine)
    store.record(
        [
            PostMetrics("mia", "instagram", f"h{i}", NOW - timedelta(days=i + 2), 24, NOW, "api", likes=9)
            for i in range(history)
        ]
    )
    cells = [
        LearnedWeight("hour_of_week", str(d * 24 + h), lift, lift * 0.95, lift * 1.05, 40)
        for d in range(7)
        for h in range(24)
        for lift in [{8: 2.2, 20: 2.0}.get(h, 0.8)]
    ]
    store.save_weights("mia", "instagram", cells, simulated=False, computed_at=NOW)
    return world, store


def _local_hours(world: World) -> set[int]:
    rows = world.ledger.list(platform="instagram", batch_id=world.batch_id, limit=None)
    assert rows and all(r.scheduled_for is not None for r in rows)
    return {r.scheduled_for.astimezone(ZoneInfo("Europe/Berlin")).hour for r in rows if r.scheduled_for}


def test_schedule_uses_learned_hours_and_records_why(
    settings_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTENTFORGE_PUBLISH_DAILY_LIMIT", "2")  # two learned hours a day: 08 and 20
    world, store = _world(settings_env, tmp_path, history=40)
    result = CliRunner().invoke(
        app, ["publish", "schedule", world.batch_id, "-p", "instagram", "--start", START]
    )
    assert result.exit_code == 0, result.output
    assert "instagram slots: " in result.output and " learned (empirical Bayes" in result.output
    assert "expected lift 2.2" in result.output
    assert _local_hours(world) <= {8, 20}
    why = store.feedback_of(sorted(world.pieces)[0])
    assert why is not None and "expected lift" in why["slot:instagram"]["why"]


def test_schedule_keeps_configured_slots_on_thin_history_and_says_why(
    settings_env: Path, tmp_path: Path
) -> None:
    world, store = _world(settings_env, tmp_path, history=5)
    result = CliRunner().invoke(
        app, ["publish", "schedule", world.batch_id, "-p", "instagram", "--start", START]
    )
    assert result.exit_code == 0, result.output
    assert "configured (default: only 5 posts (at least 30 needed))" in result.output
    assert _local_hours(world) <= {9, 13, 19}
    why = store.feedback_of(sorted(world.pieces)[0])
    assert why is not None and why["slot:instagram"]["why"] == "default: only 5 posts (at least 30 needed)"
