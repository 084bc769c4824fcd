"""Cancel a running 50-piece batch through the API, on a real worker, then resume it (issue 14, item 2).

The batch deployment (from prefect.yaml) runs on a real process worker of the ``cpu`` pool against the
session's Prefect server, its GPU stage in-process with the labelled fixed-latency image backend (each
image takes ``LATENCY_S``). ``POST /api/v1/jobs/{id}/cancel`` asks Prefect, which sets the run
Cancelling. The batch's generations then stop in its process at once, whichever comes first: the
worker's SIGTERM (the flow body stops the batch as it unwinds; seen here within a second) or the batch
flow's own watcher (``tasks/generation_queue.py``, one read of its run a second). Without that, the
in-process GPU stage's task ran on to the batch's last image while Prefect waited for it, which is why
cancelling used to take 36-56 s. The batch is marked ``cancelled`` by the body or the
``on_cancellation`` hook. What a user checks:
the batch is cancelled mid-way (fewer than 50 pieces made), no generation started later than the
watcher's tick plus one generation after the run entered Cancelling (stored timestamps against Prefect's
state history, not a guessed wall-clock bound), nothing is generated 5 s later, the ``image-generation``
slots are all free, the pieces finished before are kept, the ones never made read ``cancelled`` (in the
database and the API), and the same batch id resumes and completes them.
The job reads ``cancelled`` at the first read after the batch was released (the jobs view does not
wait for Prefect); how long the worker then takes to set the run Cancelled is Prefect's: bounded, not
fast.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.jobs import ENDED, wait_for, wait_job
from support.workers import cpu_worker, worker_logs

from contentforge.config import get_settings
from contentforge.personas import sample_persona

pytestmark = pytest.mark.slow

TOKEN = "cancel-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LATENCY_S = 3.0
PIECES = 50
WATCH_S = 1.0
"""How often the batch flow reads its run's state (``stop_when_cancelled``'s default)."""
PATIENCE_S = 180.0
"""How long a wait for a state gives up after: generous, because the 2-core CI machine may be loaded
(the test once waited a fixed 30 s for the batch to be marked and failed under load). The speed claims
are asserted on stored timestamps, not on how long these waits took."""
FINISHED = {"generated", "ready", "needs_review", "rejected", "failed"}


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


def _generation_starts(batch_id: str) -> list[datetime]:
    from tasks import resources

    return [row.started_at for row in resources.repository().pieces(batch_id=batch_id) if row.started_at]


def _entered_cancelling(job_id: str) -> datetime:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(job_id)
    return min(state.timestamp for state in states if state.type is StateType.CANCELLING)


def _active_slots() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name("image-generation").active_slots


def _statuses(batch_id: str) -> dict[str, str]:
    from tasks import resources

    return {row.id: row.status.value for row in resources.repository().pieces(batch_id=batch_id)}


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

        # mid-way: the first round of the 5 slots is stored
        started = wait_for(lambda: len(_stored(batch_id)), lambda stored: stored >= 5, timeout_s=240)
        assert started >= 5, ("the batch never got going", logs())
        assert api.get(f"/api/v1/jobs/{job_id}", headers=AUTH).json()["cancellable"] is True

        asked = datetime.now(UTC)
        stored_when_asked = len(_stored(batch_id))
        cancel = api.post(f"/api/v1/jobs/{job_id}/cancel", headers=AUTH)
        assert cancel.status_code == 202, cancel.text
        assert cancel.json()["status"] in ("cancelling", "cancelled")

        # The body (its watcher) or the on_cancellation hook marks the batch and releases it, usually
        # within seconds; the wait is on that state, its bound generous (see PATIENCE_S).
        def batch_now() -> tuple[str, Any]:
            (batch,) = [b for b in resources.repository().latest_batches(limit=50) if b.id == batch_id]
            return batch.status, resources.repository().batch_lease(batch_id)

        marked = wait_for(batch_now, lambda now: now == ("cancelled", None), PATIENCE_S)
        batch_marked_s = (datetime.now(UTC) - asked).total_seconds()
        assert marked[0] == "cancelled", (marked, logs())
        assert resources.repository().batch_lease(batch_id) is None, "its lease is released for a resume"
        # The job reads cancelled at the first read after its batch was released: the view does not
        # wait for Prefect's worker (state_name says how far Prefect is).
        prompt = api.get(f"/api/v1/jobs/{job_id}", headers=AUTH).json()
        assert prompt["status"] == "cancelled", (prompt, logs())
        job_read_s = (datetime.now(UTC) - asked).total_seconds()

        job = wait_for(
            lambda: api.get(f"/api/v1/jobs/{job_id}", headers=AUTH).json(),
            lambda job: job["status"] == "cancelled" and job["state_name"] == "Cancelled",
            PATIENCE_S,
        )
        took = (datetime.now(UTC) - asked).total_seconds()
        assert job["status"] == "cancelled", (job, logs())
        # Prefect's part: the process exits, the worker runs the hook and sets Cancelled (10.5 s seen;
        # it imports the flow module first, slow on a loaded 2-core machine). Bounded, not fast.
        assert job["state_name"] == "Cancelled", (f"Prefect: {job['state_name']} {took:.1f} s after", logs())

        cancelling = _entered_cancelling(job_id)
        # The stop comes within WATCH_S of Cancelling at the latest (the watcher; the worker's signal is
        # usually sooner); a generation a slot started before it may start up to then, no later. Allowance:
        # one generation time for the read itself and the hand-off, against stored generation start times.
        starts = _generation_starts(batch_id)
        late = [t for t in starts if t > cancelling + timedelta(seconds=WATCH_S + LATENCY_S)]
        assert late == [], (f"generations started after Cancelling at {cancelling}: {late}", logs())

        kept = _stored(batch_id)
        time.sleep(5)
        assert _stored(batch_id) == kept, "nothing was generated (or rewritten) 5 s after the cancellation"
        latest = max(finished for _, finished in kept.values())
        assert latest < datetime.now(UTC) - timedelta(seconds=5), "no generation ran on"
        assert _active_slots() == 0, "every image-generation slot is free again"
        last_start = max(starts) - cancelling
        print(
            f"{stored_when_asked} pieces stored when asked, {len(kept)} when cancelled; last generation "
            f"started {last_start.total_seconds():+.2f} s after Cancelling; batch marked "
            f"{batch_marked_s:.1f} s, job read cancelled {job_read_s:.1f} s and Prefect's run Cancelled "
            f"{took:.1f} s after the request"
        )
        assert stored_when_asked <= len(kept) < PIECES, "cancelled mid-way: the rest was never generated"
        assert len(starts) == len(kept), "every generation that ran was stored (none thrown away)"
        # The pieces the run never made read cancelled; the ones it made keep what they reached.
        statuses = _statuses(batch_id)
        assert len(statuses) == PIECES, "the whole batch was planned before it was cancelled"
        unmade = {piece for piece in statuses if piece not in kept}
        assert {statuses[piece] for piece in unmade} == {"cancelled"}, statuses
        assert {statuses[piece] for piece in kept} <= FINISHED, statuses
        pieces = {
            p["id"]: p["status"] for p in api.get(f"/api/v1/batches/{batch_id}/pieces", headers=AUTH).json()
        }
        assert pieces == statuses, "the API shows the same"
        counts = api.get(f"/api/v1/batches/{batch_id}", headers=AUTH).json()["stats"]["by_status"]
        assert counts["cancelled"] == len(unmade) and counts["planned"] == 0

        resumed = api.post(
            "/api/v1/content/batch",
            headers=AUTH,
            json={"persona": "mia-fit", "num_pieces": PIECES, "seed": 5, "batch_id": batch_id},
        )
        assert resumed.status_code == 202, resumed.text
        second = resumed.json()["flow_run_id"]
        assert second != job_id
        done = wait_job(api, second, ENDED, timeout_s=300, headers=AUTH)
        assert done["status"] == "completed", (done, logs())
        assert done["progress"] == 100.0 and done["result"]["batch_status"] == "completed"

    after = _stored(batch_id)
    assert len(after) == PIECES, "the resume finished the rest"
    assert {piece: after[piece] for piece in kept} == kept, "finished pieces were kept, not made again"
    assert set(_statuses(batch_id).values()) <= FINISHED, "no piece is left cancelled (or planned)"
