"""Distributed mode end to end: deployments from prefect.yaml, a cpu and a gpu worker, 5 slots.

A real ``prefect server`` (the session's), ``bootstrap_cluster``, ``prefect deploy --all``, two
process workers started like ``contentforge up`` starts them; a batch deployment run on the cpu pool
sends its GPU stage to the ``generate-images`` deployment on the gpu pool. Uses the labelled
fixed-latency image backend so the test measures orchestration, not a model.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.workers import wait_final

from contentforge.config import get_settings
from contentforge.metrics import concurrency_figures
from contentforge.personas import sample_persona

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def prefect_api(request: pytest.FixtureRequest, prefect_server: str, tmp_path: Path) -> Iterator[str]:
    """The session's Prefect server (SQLite), or a second one whose state is in PostgreSQL."""
    if request.param == "sqlite":
        yield prefect_server
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from sqlalchemy.engine import make_url

    from contentforge_cli.server import ensure_server, stop_server

    database = make_url(request.getfixturevalue("pg_database")).set(drivername="postgresql+asyncpg")
    home = tmp_path / "prefect-pg"
    server = ensure_server(
        home, port=_free_port(), database_url=database.render_as_string(hide_password=False)
    )
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        stop_server(home)


@pytest.fixture
def cluster(settings_env: Path, prefect_api: str, tmp_path: Path) -> Iterator[Path]:
    """Bootstrap, deployments from prefect.yaml, and a cpu and a gpu worker as ``contentforge up``."""
    from contentforge_cli.stack import deploy_all, start, stop, worker_services
    from tasks import resources
    from tasks.bootstrap import bootstrap_cluster

    settings = get_settings()
    outcome = bootstrap_cluster(settings)
    assert {"pool cpu", "pool gpu", "queue gpu/priority", "queue gpu/default"} <= set(outcome)
    again = bootstrap_cluster(settings)
    assert set(again.values()) == {"unchanged"}, again
    resources.repository().upsert_persona(sample_persona())
    deployed = deploy_all()
    assert {"produce-content-batch/produce-content-batch", "generate-images/generate-images"} <= set(deployed)
    assert deploy_all() == deployed, "applying prefect.yaml again must update, not duplicate"

    run_dir = tmp_path / "run"
    env = {
        "CONTENTFORGE_DATA_DIR": str(settings_env),
        "CONTENTFORGE_IMAGE_PROFILE": "fixed-latency",
        "CONTENTFORGE_FIXED_LATENCY_S": "0.3",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
    }
    services = worker_services(prefect_api, "cpu", "gpu", "generate-images/generate-images")
    for service in services:
        service.env.update(env)
        start(run_dir, service)
    try:
        yield run_dir
    finally:
        for service in services:
            stop(run_dir, service.name)


def _wait_final(flow_run_id: str, timeout_s: float) -> Any:
    return wait_final(flow_run_id, timeout_s, poll_s=2)


def test_an_api_batch_runs_on_the_cpu_worker_with_its_gpu_stage_on_the_gpu_worker(
    cluster: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    from contentforge_api.app import create_app
    from tasks import resources

    monkeypatch.setenv("CONTENTFORGE_API_TOKEN", "e2e-token")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as api:
        response = api.post(
            "/api/v1/content/batch",
            headers={"Authorization": "Bearer e2e-token"},
            json={"persona": "mia-fit", "num_pieces": 12, "seed": 3},
        )
        assert response.status_code == 202, response.text
        launched = response.json()
        run = _wait_final(launched["flow_run_id"], timeout_s=420)
        logs = {p.name: p.read_text()[-3000:] for p in cluster.glob("*.log")}
        assert run.state.is_completed(), (run.state, logs)
        status = api.get(f"/api/v1/runs/{run.id}", headers={"Authorization": "Bearer e2e-token"})
        assert status.status_code == 200 and status.json()["state_type"] == "COMPLETED", status.text
    assert run.work_pool_name == "cpu"

    with get_client(sync_client=True) as client:
        # limit and sort spelled out: this server refuses the client's null defaults (422).
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])),
            sort=FlowRunSort.START_TIME_ASC,
            limit=20,
        )
    gpu_runs = [child for child in children if child.work_pool_name == "gpu"]
    assert len(gpu_runs) == 1, [(c.name, c.work_pool_name) for c in children]
    assert gpu_runs[0].state is not None and gpu_runs[0].state.is_completed()

    rows = resources.repository().pieces(batch_id=launched["batch_id"])
    assert len(rows) == 12 and all(r.storage_key for r in rows)
    figures = concurrency_figures(((r.started_at, r.finished_at) for r in rows if r.started_at), 5)
    assert figures.pieces == 12
    assert 1 <= figures.peak_concurrent <= 5
    assert os.environ.get("CONTENTFORGE_GPU_DEPLOYMENT") is None, "the test process itself stays local"


def test_pool_templates_are_valid_json_schemas_and_every_placeholder_is_declared() -> None:
    import re

    import jsonschema

    from tasks.bootstrap import POOL_TEMPLATES, base_job_template

    for role, worker_type in POOL_TEMPLATES:
        template = base_job_template(role, worker_type)
        jsonschema.Draft202012Validator.check_schema(template["variables"])
        declared = set(template["variables"]["properties"])
        used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", str(template["job_configuration"])))
        assert used <= declared, (role, worker_type, used - declared)
        defaults = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
        jsonschema.validate(defaults, template["variables"])
    gpu_k8s = base_job_template("gpu", "kubernetes")
    limits = gpu_k8s["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert limits["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpus }}"


def test_compose_file_wires_server_postgres_workers_and_api() -> None:
    import yaml

    root = Path(__file__).resolve().parents[1]
    compose = yaml.safe_load((root / "infra" / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "cpu-worker", "gpu-worker", "api"} <= set(services)
    gpu = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    for name in ("cpu-worker", "gpu-worker"):
        assert services[name]["build"]["context"] == "../.."  # the repository root
        assert (root / services[name]["build"]["dockerfile"]).exists()
    assert (
        "postgresql+asyncpg"
        in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    )


def test_every_flow_has_a_deployment_on_the_right_pool() -> None:
    import yaml

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "prefect.yaml").read_text())
    entrypoints = {d["entrypoint"].split(":")[0]: d for d in config["deployments"]}
    flow_files = {f"flows/{p.name}" for p in (root / "flows").glob("*.py") if "@flow(" in p.read_text()}
    assert flow_files <= set(entrypoints), flow_files - set(entrypoints)
    pools = {d["name"]: d["work_pool"]["name"] for d in config["deployments"]}
    assert pools.pop("generate-images") == "gpu"
    assert set(pools.values()) == {"cpu"}
    schedules = {d["name"] for d in config["deployments"] if d.get("schedules")}
    assert schedules == {"publish-due", "collect-metrics", "learn", "resend-replies"}


@pytest.mark.parametrize("prefect_api", ["sqlite"], indirect=True)
def test_a_cancelled_batch_run_marks_its_batch_cancelled_and_frees_it(cluster: Path) -> None:
    """Issue 12, item 4: cancelling a batch in Prefect marks ContentForge's row and releases its lease.

    The worker stops the run's process and runs its ``on_cancellation`` hook; a resume may then take
    the batch at once, without waiting for a lease to expire.
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelling

    from tasks import resources

    repo = resources.repository()
    run = run_deployment(
        "produce-content-batch/produce-content-batch",
        parameters={"persona": "mia-fit", "num_pieces": 400, "seed": 1, "batch_id": "cancel-me"},
        timeout=0,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # cancel once it holds the batch and images are coming
        if repo.batch_lease("cancel-me") and any(r.storage_key for r in repo.pieces(batch_id="cancel-me")):
            break
        time.sleep(1)
    else:
        pytest.fail("the batch never started generating")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(), force=True)
    final = _wait_final(str(run.id), timeout_s=180)
    logs = {p.name: p.read_text()[-3000:] for p in cluster.glob("*.log")}
    assert final.state.is_cancelled(), (final.state, logs)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and repo.batch_lease("cancel-me") is not None:
        time.sleep(1)  # the hook runs right after the worker stopped the process
    batch = next(b for b in repo.latest_batches() if b.id == "cancel-me")
    assert batch.status == "cancelled", (batch, logs)
    assert repo.batch_lease("cancel-me") is None
    pieces = repo.pieces(batch_id="cancel-me")
    # Its GPU stage on the other worker was cancelled with it (it would otherwise make all 400).
    assert 0 < sum(bool(r.storage_key) for r in pieces) < 400, (
        "stopped part-way, what it made is kept",
        logs,
    )
