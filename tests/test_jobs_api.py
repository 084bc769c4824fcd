"""``/api/v1/jobs`` against the session's real Prefect server: list, show, stats, cancel, form answers.

Flow runs are created on the server as ContentForge's launchers create them (flow names, parameters,
tags, states, a progress artifact) without running their flows, except the form test, which runs the
real ``review-pieces`` flow until it pauses for a reviewer and resumes it through the API.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.api import World, build_world

from contentforge.config import Settings

TOKEN = "jobs-token"
READ_TOKEN = "jobs-read-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture()
def world(settings_env: Path) -> World:
    settings = Settings(_env_file=None, data_dir=settings_env, api_token=TOKEN, api_read_token=READ_TOKEN)
    return build_world(settings)


@pytest.fixture()
def api(world: World) -> Iterator[TestClient]:
    from contentforge_api.app import create_app

    with TestClient(create_app(world.settings)) as client:
        yield client


def _flow(name: str) -> Any:
    from prefect import Flow

    def body() -> None:  # never run: the run is created and moved through its states by the test
        return None

    return Flow(body, name=name)


def _run(
    name: str, parameters: dict[str, Any], tags: list[str], *states: Any, progress: float | None = None
) -> str:
    """A flow run of flow ``name`` taken through ``states`` (Prefect states), with a progress artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(_flow(name), parameters=parameters, tags=tags, state=Scheduled())
        for state in states:
            client.set_flow_run_state(run.id, state, force=True)
        if progress is not None:
            client.create_artifact(
                ArtifactCreate(
                    type="progress", data=progress, flow_run_id=run.id, description="batch b1: pieces"
                )
            )
    return str(run.id)


def test_jobs_are_listed_shown_filtered_paged_and_counted(api: TestClient, world: World) -> None:
    from prefect.states import Completed, Failed, Running

    mark = uuid.uuid4().hex[:10]
    persona_tag, brand = f"persona:ava-{mark}", f"brand-{mark}"
    world.repo.add_cost("b1", kind="image", provider="replicate", amount_usd=0.25)
    batch = _run(
        "produce-content-batch",
        {"persona": "ava", "num_pieces": 6, "batch_id": "b1"},
        [persona_tag, "batch:b1", "api", "batch"],
        Running(),
        progress=40.0,
    )
    single = _run(
        "produce-content-batch",
        {"persona": "ava", "num_pieces": 1, "batch_id": "b2"},
        [persona_tag, "batch:b2", "api", "single"],
        Running(),
        Completed(),
    )
    research = _run("research-brand", {"name": brand}, [f"brand:{brand}"], Running(), Completed())
    personas = _run(
        "create-personas", {"brand": brand}, [f"brand:{brand}"], Running(), Failed(message="LLM said no")
    )
    _run("not-a-contentforge-flow", {"persona": "ava"}, [persona_tag], Running())

    listed = api.get("/api/v1/jobs", headers=READ, params={"persona": f"ava-{mark}"})
    assert listed.status_code == 200, listed.text
    jobs = {job["id"]: job for job in listed.json()["jobs"]}
    assert set(jobs) == {batch, single}, "only ContentForge's flows are jobs, filtered by persona"
    running = jobs[batch]
    assert (running["type"], running["status"], running["progress"]) == ("batch", "running", 40.0)
    assert running["message"] == "batch b1: pieces"
    assert running["subject"] == {"persona": "ava", "brand": None, "batch": "b1", "topic": None, "post": None}
    ledger = next(b.usd for b in world.repo.cost_report().batches if b.batch_id == "b1")
    assert running["cost_usd"] == pytest.approx(ledger) and ledger >= 0.25
    assert running["cancellable"] is False, "a run without a deployment has no worker to stop it"
    assert jobs[single]["type"] == "single" and jobs[single]["progress"] == 100.0
    assert jobs[single]["result"]["batch_status"] == "running", "the batch row's own status is reported"

    only_single = api.get("/api/v1/jobs", headers=READ, params={"persona": f"ava-{mark}", "type": "single"})
    assert [job["id"] for job in only_single.json()["jobs"]] == [single]
    only_running = api.get(
        "/api/v1/jobs", headers=READ, params={"persona": f"ava-{mark}", "status": "running"}
    )
    assert [job["id"] for job in only_running.json()["jobs"]] == [batch]
    first = api.get("/api/v1/jobs", headers=READ, params={"persona": f"ava-{mark}", "limit": 1}).json()
    second = api.get(
        "/api/v1/jobs",
        headers=READ,
        params={"persona": f"ava-{mark}", "limit": 1, "offset": first["next_offset"]},
    ).json()
    assert first["next_offset"] == 1 and second["next_offset"] is None
    assert {first["jobs"][0]["id"], second["jobs"][0]["id"]} == {batch, single}, (
        "pages neither skip nor repeat"
    )

    shown = api.get(f"/api/v1/jobs/{personas}", headers=READ).json()
    assert (shown["type"], shown["status"], shown["error"]) == ("personas", "failed", "LLM said no")
    assert shown["subject"]["brand"] == brand
    assert api.get(f"/api/v1/jobs/{research}", headers=READ).json()["subject"]["brand"] == brand

    stats = api.get("/api/v1/jobs/stats", headers=READ, params={"group_by": "brand"})
    assert stats.status_code == 200, stats.text
    (group,) = [g for g in stats.json()["groups"] if g["key"] == brand]
    assert group["jobs"] == 2 and group["by_status"] == {"completed": 1, "failed": 1}
    assert group["by_type"] == {"personas": 1, "research": 1}
    assert group["failure_rate"] == 0.5 and group["mean_duration_s"] is not None

    assert api.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=READ).status_code == 404
    assert api.get("/api/v1/jobs", headers=READ, params={"status": "exploded"}).status_code == 422
    assert api.get("/api/v1/jobs").status_code == 401


def test_cancel_answers_for_each_state(api: TestClient) -> None:
    from prefect.states import Completed, Running

    scheduled = _run("publish-due", {"limit": 5}, [])
    response = api.post(f"/api/v1/jobs/{scheduled}/cancel", headers=AUTH)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "cancelled", "nothing runs it yet: cancelled at once"

    finished = _run("publish-due", {"limit": 5}, [], Running(), Completed())
    refused = api.post(f"/api/v1/jobs/{finished}/cancel", headers=AUTH)
    assert refused.status_code == 409 and "already ended (completed)" in refused.json()["error"]["message"]

    in_cli = _run("produce-content-batch", {"persona": "ava", "batch_id": "b1"}, [], Running())
    refused = api.post(f"/api/v1/jobs/{in_cli}/cancel", headers=AUTH)
    assert refused.status_code == 409 and "Ctrl+C" in refused.json()["error"]["message"]

    assert api.post(f"/api/v1/jobs/{in_cli}/cancel", headers=READ).status_code == 403, "read-only token"
    assert api.post(f"/api/v1/jobs/{uuid.uuid4()}/cancel", headers=AUTH).status_code == 404
    other = _run("not-a-contentforge-flow", {}, [], Running())
    assert api.post(f"/api/v1/jobs/{other}/cancel", headers=AUTH).status_code == 404, "not a job: untouched"


def _wait_paused(api: TestClient, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = api.get(f"/api/v1/jobs/{job_id}", headers=READ)
        if response.status_code == 200 and response.json()["waiting_for_input"]:
            return response.json()
        time.sleep(0.5)
    pytest.fail(f"job {job_id} never paused for input")


@pytest.mark.slow
def test_a_paused_job_shows_its_form_and_resumes_with_the_answer(api: TestClient, world: World) -> None:
    from prefect import tags

    from flows.review_pieces import review_pieces

    results: dict[str, Any] = {}
    job_tag = f"job-{uuid.uuid4().hex[:8]}"

    def run() -> None:
        with tags(job_tag):
            results["summary"] = review_pieces("b1", timeout_s=120, poll_interval_s=1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    job_id = None
    while job_id is None and time.monotonic() < deadline:
        jobs = api.get("/api/v1/jobs", headers=READ, params={"type": "review", "limit": 50}).json()["jobs"]
        job_id = next((job["id"] for job in jobs if job_tag in job["tags"]), None)
        time.sleep(0.3)
    assert job_id, "the review run appears as a job"
    job = _wait_paused(api, job_id)
    assert job["status"] == "paused" and job["type"] == "review"

    form = api.get(f"/api/v1/jobs/{job_id}/input", headers=READ)
    for _ in range(20):  # the run saves its form just after pausing
        if form.status_code != 409:
            break
        time.sleep(0.25)
        form = api.get(f"/api/v1/jobs/{job_id}/input", headers=READ)
    assert form.status_code == 200, form.text
    schema = form.json()["schema"]
    assert {"reviewer", "decisions"} <= set(schema["properties"]) and "reviewer" in schema["required"]

    assert api.post(f"/api/v1/jobs/{job_id}/input", headers=READ, json={"reviewer": "x"}).status_code == 403
    wrong = api.post(f"/api/v1/jobs/{job_id}/input", headers=AUTH, json={"decisions": "yes"})
    assert wrong.status_code == 422, wrong.text
    assert api.get(f"/api/v1/jobs/{job_id}", headers=READ).json()["status"] == "paused", "still waiting"

    answer = {"reviewer": "kim", "decisions": [{"piece_id": "b1-002", "decision": "approve"}]}
    resumed = api.post(f"/api/v1/jobs/{job_id}/input", headers=AUTH, json=answer)
    assert resumed.status_code == 200, resumed.text
    thread.join(60)
    assert results["summary"]["approved"] == ["b1-002"]
    assert world.repo.get_piece("b1-002").status.value == "ready"
    again = api.get(f"/api/v1/jobs/{job_id}/input", headers=READ)
    assert again.status_code == 409, "nothing is waiting any more"


def test_the_jobs_cli_lists_shows_and_cancels_with_one_line_refusals(world: World) -> None:
    from prefect.states import Completed, Running
    from typer.testing import CliRunner

    from contentforge_cli.main import app

    mark = uuid.uuid4().hex[:10]
    running = _run(
        "produce-content-batch", {"persona": "ava", "batch_id": "b1"}, [f"persona:cli-{mark}"], Running()
    )
    waiting = _run("publish-due", {"limit": 5}, [f"persona:cli-{mark}"])
    cli = CliRunner()

    from contentforge_cli.context import console

    wide = console.width
    console.width = 80  # a plain terminal: the ids must still come out whole, ready to copy
    try:
        listed = cli.invoke(app, ["jobs", "list", "--persona", f"cli-{mark}"])
    finally:
        console.width = wide
    assert listed.exit_code == 0, listed.output
    assert running in listed.output and waiting in listed.output and "2 job(s)" in listed.output
    shown = cli.invoke(app, ["jobs", "show", running])
    assert shown.exit_code == 0 and '"type": "batch"' in shown.output and '"batch": "b1"' in shown.output
    cancelled = cli.invoke(app, ["jobs", "cancel", waiting])
    assert cancelled.exit_code == 0 and f"{waiting}: cancelled" in cancelled.output
    done = _run("publish-due", {"limit": 5}, [f"persona:cli-{mark}"], Running(), Completed())
    watched = cli.invoke(app, ["jobs", "watch", done], env={"COLUMNS": "300"})
    assert watched.exit_code == 0, watched.output
    assert "state: Running" in watched.output and f"{done}: completed" in watched.output
    stopped = cli.invoke(app, ["jobs", "watch", waiting], env={"COLUMNS": "300"})
    assert stopped.exit_code == 1 and f"{waiting}: cancelled" in stopped.output, "not completed: exit 1"

    for args, message in (
        (["jobs", "show", "not-a-uuid"], "job id must be a flow run id"),
        (["jobs", "show", str(uuid.uuid4())], "no job with id"),
        (["jobs", "cancel", running], "Ctrl+C"),
        (["jobs", "list", "--status", "exploded"], "unknown status 'exploded'"),
    ):
        refused = cli.invoke(app, args, env={"COLUMNS": "300"})
        assert refused.exit_code == 2 and message in refused.output, (args, refused.output)
        assert len(refused.output.strip().splitlines()) == 1, refused.output
