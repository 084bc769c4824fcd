"""A cancelled batch job reads ``cancelled`` once its work stopped, not once Prefect got there (issue 14).

Prefect sets a run ``Cancelled`` only after its runner killed the process and ran the hooks in a
fresh interpreter; the batch flow stops its work within a tick of its watcher and marks the batch
``cancelled`` with its lease released. The jobs view reads that: a run still ``Cancelling`` whose
batch this run held is ``cancelled`` and free shows ``cancelled`` at the next read. A batch still
held, or released by an earlier run while this one (a resume) never took it, keeps ``cancelling``.
Runs are created on the session's real Prefect server without running their flows (as in
``tests/test_jobs_api.py``); the slow end-to-end check is ``tests/test_jobs_cancel.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.api import World, build_world

from contentforge.config import Settings
from contentforge.db.leases import lease_owner

TOKEN = "jobs-view-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture()
def world(settings_env: Path) -> World:
    return build_world(Settings(_env_file=None, data_dir=settings_env, api_token=TOKEN))


@pytest.fixture()
def api(world: World) -> Iterator[TestClient]:
    from contentforge_api.app import create_app

    with TestClient(create_app(world.settings)) as client:
        yield client


def _cancelling_batch_run(batch_id: str) -> str:
    """A ``produce-content-batch`` run moved to Running, then Cancelling (as the cancel route does)."""
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling, Running, Scheduled

    def body() -> None:  # never run
        return None

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(
            Flow(body, name="produce-content-batch"),
            parameters={"persona": "ava", "num_pieces": 3, "batch_id": batch_id},
            tags=["persona:ava", f"batch:{batch_id}", "api", "batch"],
            state=Scheduled(),
        )
        client.set_flow_run_state(run.id, Running(), force=True)
        cancelling = Cancelling(message="cancelled through the ContentForge API")
        client.set_flow_run_state(run.id, cancelling, force=True)
    return str(run.id)


def _batch(world: World, batch_id: str) -> None:
    world.repo.create_batch(
        batch_id=batch_id,
        persona_id="ava",
        platform="instagram",
        num_pieces=3,
        tier_mix={"safe": 1.0, "suggestive": 0.0},
        seed=1,
        params={},
        flow_run_id=None,
    )


def _job(api: TestClient, job_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/jobs/{job_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_cancelling_batch_job_reads_cancelled_as_soon_as_its_run_released_the_batch(
    api: TestClient, world: World
) -> None:
    batch_id = f"cv-{uuid.uuid4().hex[:10]}"
    _batch(world, batch_id)
    job_id = _cancelling_batch_run(batch_id)
    owner = lease_owner(job_id)
    world.repo.acquire_batch_lease(batch_id, owner, ttl_s=300, flow_run_id=job_id)

    working = _job(api, job_id)
    assert (working["status"], working["state_name"]) == ("cancelling", "Cancelling"), "still holds its batch"

    assert world.repo.end_batch_run(batch_id, "cancelled", owner=owner)  # what the flow body does on stop
    stopped = _job(api, job_id)  # the next read, whatever Prefect says
    assert stopped["status"] == "cancelled" and stopped["state_name"] == "Cancelling"
    assert stopped["cancellable"] is False and stopped["result"]["batch_status"] == "cancelled"
    assert stopped["error"] == "cancelled through the ContentForge API"
    again = api.post(f"/api/v1/jobs/{job_id}/cancel", headers=AUTH)
    assert again.status_code == 202 and again.json()["status"] == "cancelled"  # nothing more to ask


def test_a_resume_cancelled_before_it_took_the_batch_keeps_reading_cancelling(
    api: TestClient, world: World
) -> None:
    batch_id = f"cv-{uuid.uuid4().hex[:10]}"
    _batch(world, batch_id)
    first = str(uuid.uuid4())  # the earlier run: it held the batch and was cancelled
    world.repo.acquire_batch_lease(batch_id, lease_owner(first), ttl_s=300, flow_run_id=first)
    assert world.repo.end_batch_run(batch_id, "cancelled", owner=lease_owner(first))

    resume = _cancelling_batch_run(batch_id)  # never took the lease: its process may still be starting
    assert _job(api, resume)["status"] == "cancelling"
