"""The scheduling and publishing flows on the real Prefect test server, with the offline outbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from support.publishing import make_world

from contentforge.config import get_settings

pytestmark = pytest.mark.slow


def test_schedule_then_publish_due_posts_each_ready_piece_once(
    settings_env: Path, prefect_server: str, tmp_path: Path
) -> None:
    from flows.publish_due import publish_due
    from flows.schedule_batch import schedule_batch

    settings = get_settings()
    world = make_world(
        tmp_path, ["ready-safe", "ready-safe", "ready-suggestive", "rejected", "needs_review", "failed"],
        url=settings.resolved_database_url,
    )  # fmt: skip
    start = datetime.now(UTC) - timedelta(days=2)  # slots in the past are due now
    scheduled = schedule_batch(world.batch_id, ["instagram", "linkedin"], start)
    # instagram: 2 safe + 1 suggestive; linkedin: the 2 safe ones (suggestive is not accepted there).
    assert scheduled["scheduled"] == 5 and scheduled["refused"] == 7

    result = publish_due(limit=20)
    assert (result["claimed"], result["published"], result["failed"]) == (5, 5, 0)
    assert all(o["status"] == "published" and o["url"].startswith("file://") for o in result["outcomes"])
    outbox = settings.data_dir / "outbox"
    posted = sorted(p.relative_to(outbox).as_posix() for p in outbox.rglob("*.json"))
    expected = [f"instagram/{pid}.json" for pid in world.ids("ready-safe") + world.ids("ready-suggestive")]
    expected += [f"linkedin/{pid}.json" for pid in world.ids("ready-safe")]
    assert posted == sorted(expected)
    record = json.loads((outbox / expected[0]).read_text())
    assert record["caption"] and record["idempotency_key"].startswith("cf-")

    # A second run finds nothing due and posts nothing again.
    assert publish_due(limit=20)["claimed"] == 0
    assert {row.status for row in world.ledger.list(limit=None)} == {"published"}

    answer = httpx.post(f"{prefect_server}/artifacts/filter", json={"limit": 50, "sort": "CREATED_DESC"})
    found = {a["key"]: str(a["data"]) for a in reversed(answer.json()) if a["key"]}
    assert "publishing-schedule" in found
    assert "Nothing was due" in found["published"]  # the latest: the second, empty run
