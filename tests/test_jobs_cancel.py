"""Cancel a running 50-piece batch through the API, on a real worker, then resume it (issue 14, item 2).

The batch deployment (from prefect.yaml) runs on a real process worker of the ``cpu`` pool against the
session's Prefect server, its GPU stage in-process with the labelled fixed-latency image backend (each
image takes ``LATENCY_S``). ``POST /api/v1/jobs/{id}/cancel`` asks Prefect; the worker stops the run's
process and the flow's ``on_cancellation`` hook marks the batch. What a user checks: the job ends
``cancelled``, nothing is generated any more 5 s after that, the ``image-generation`` slots are all
free, the pieces finished before are kept, and the same batch id resumes and completes. How long the
worker takes to stop the process is Prefect's; it is bounded here, not fast (see docs/api.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.workers import cpu_worker, worker_logs

from contentforge.config import get_settings
from contentforge.personas import sample_persona

pytestmark = pytest.mark.slow

TOKEN = "cancel-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LATENCY_S = 1.0
PIECES = 50


@pytest.fixture
def worker(settings_env: Path, prefect_server: str, tmp_path: Path) -> Iterator[Path]:
    from tasks import resources

    resources.repository().upsert_persona(sample_persona())
    env = {"CONTENTFORGE_IMAGE_PROFILE": "fixed-latency", "CONTENTFORGE_FIXED_LATENCY_S": str(LATENCY_S)}
    with cpu_worker(prefect_server, settings_env, tmp_path / "run", **env) as run_dir:
        yield run_dir


def _stored(batch_id: str) -> dict[str, Any]:
    from tasks import resources

    return {
        row.id: (row.content_sha256, row.finished_at)
        for row in resources.repository().pieces(batch_id=batch_id)
        if row.storage_key
    }


def _active_slots() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name("image-generation").active_slots


def _wait_job(api: TestClient, job_id: str, statuses: set[str], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = api.get(f"/api/v1/jobs/{job_id}", headers=AUTH).json()
        if job["status"] in statuses or time.monotonic() > deadline:
            return job
        time.sleep(0.25)


def test_a_cancelled_batch_stops_at_once_keeps_its_pieces_and_resumes(
    worker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contentforge_api.app import create_app
    from tasks import resources

    monkeypatch.setenv("CONTENTFORGE_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    logs = lambda: worker_logs(worker)  # noqa: E731
    with TestClient(create_app(get_settings())) as api:
        launched = api.post(
            "/api/v1/content/batch",
            headers=AUTH,
            json={"persona": "mia-fit", "num_pieces": PIECES, "seed": 5},
        )
        assert launched.status_code == 202, launched.text
        job_id, batch_id = launched.json()["flow_run_id"], launched.json()["batch_id"]

        deadline = time.monotonic() + 240
        while len(_stored(batch_id)) < 8:  # mid-way: a few rounds of the 5 slots are done
            assert time.monotonic() < deadline, ("the batch never got going", logs())
            time.sleep(0.2)
        assert api.get(f"/api/v1/jobs/{job_id}", headers=AUTH).json()["cancellable"] is True

        asked = datetime.now(UTC)
        stored_when_asked = len(_stored(batch_id))
        cancel = api.post(f"/api/v1/jobs/{job_id}/cancel", headers=AUTH)
        assert cancel.status_code == 202, cancel.text
        assert cancel.json()["status"] in ("cancelling", "cancelled")
        job = _wait_job(api, job_id, {"cancelled"}, timeout_s=90)
        assert job["status"] == "cancelled", (job, logs())
        took = (datetime.now(UTC) - asked).total_seconds()
        # Prefect's part: the worker hears of the cancellation (event stream), stops the process, then
        # runs the on_cancellation hook, importing the flow module first (measured: 30-40 s in all on a
        # loaded 2-core machine, most of it that import). Bounded here so a regression to "never" fails.
        assert took < 75, f"cancelled {took:.1f} s after being asked"

        deadline = time.monotonic() + 20
        while resources.repository().batch_lease(batch_id) is not None and time.monotonic() < deadline:
            time.sleep(0.25)  # the on_cancellation hook runs as the worker stops the process
        (batch,) = [b for b in resources.repository().latest_batches(limit=50) if b.id == batch_id]
        assert batch.status == "cancelled", (batch, logs())
        assert resources.repository().batch_lease(batch_id) is None, "its lease is released for a resume"

        kept = _stored(batch_id)
        time.sleep(5)
        assert _stored(batch_id) == kept, "nothing was generated (or rewritten) 5 s after the cancellation"
        latest = max(finished for _, finished in kept.values())
        assert latest < datetime.now(UTC) - timedelta(seconds=5), "no generation ran on"
        assert _active_slots() == 0, "every image-generation slot is free again"
        # Known gap (docs/api.md, "Cancel"): Prefect's worker stops the process only once it hears of the
        # cancellation, and the in-process GPU stage generates until then; so the batch may have been
        # generated in full before it stopped. What it made is kept either way.
        print(f"{stored_when_asked} pieces stored when asked, {len(kept)} when cancelled")
        assert stored_when_asked <= len(kept) <= PIECES

        resumed = api.post(
            "/api/v1/content/batch",
            headers=AUTH,
            json={"persona": "mia-fit", "num_pieces": PIECES, "seed": 5, "batch_id": batch_id},
        )
        assert resumed.status_code == 202, resumed.text
        second = resumed.json()["flow_run_id"]
        assert second != job_id
        done = _wait_job(api, second, {"completed", "failed", "crashed", "cancelled"}, timeout_s=300)
        assert done["status"] == "completed", (done, logs())
        assert done["progress"] == 100.0 and done["result"]["batch_status"] == "completed"

    after = _stored(batch_id)
    assert len(after) == PIECES, "the resume finished the rest"
    assert {piece: after[piece] for piece in kept} == kept, "finished pieces were kept, not made again"
