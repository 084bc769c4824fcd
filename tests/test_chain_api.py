"""The whole strategy chain through the API alone: research → personas → topics → blog → social.

Each step is started with its POST (202 + a job), run by a real ``cpu`` process worker from the
deployments of prefect.yaml against the session's Prefect server, and its approval is answered with
``POST /api/v1/jobs/{id}/input`` after reading the form with ``GET``: no Prefect UI, no CLI, no
direct call into a flow. Research reads a local brand website (loopback), text is the offline engine.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.brand_site import BrandSite
from support.workers import cpu_worker, worker_logs

from contentforge.config import get_settings

pytestmark = pytest.mark.slow

TOKEN = "chain-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def chain_api(
    settings_env: Path, prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, BrandSite, Path]]:
    from contentforge_api.app import create_app

    env = {"CONTENTFORGE_RESEARCH_ALLOW_PRIVATE": "1", "CONTENTFORGE_TEXT_PROVIDERS": "offline"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CONTENTFORGE_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    with (
        BrandSite() as site,
        cpu_worker(prefect_server, settings_env, tmp_path / "run", **env) as run_dir,
        TestClient(create_app(get_settings())) as api,
    ):
        yield api, site, run_dir


def _wait(
    api: TestClient, job_id: str, run_dir: Path, *, paused: bool = False, timeout_s: float = 180
) -> dict[str, Any]:
    """Until the job waits for input (``paused``) or ends; fails with the worker's log otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = api.get(f"/api/v1/jobs/{job_id}", headers=AUTH).json()
        if paused and job["waiting_for_input"]:
            form = api.get(f"/api/v1/jobs/{job_id}/input", headers=AUTH)
            if form.status_code == 200:  # the form is saved just after the pause
                return {"job": job, "form": form.json()}
        if job["status"] in ("completed", "failed", "crashed", "cancelled"):
            assert not paused and job["status"] == "completed", (job, worker_logs(run_dir))
            return {"job": job}
        time.sleep(0.5)
    pytest.fail(f"job {job_id} did not get there in {timeout_s} s: {worker_logs(run_dir)}")


def _answer(api: TestClient, job_id: str, answer: dict[str, Any]) -> None:
    response = api.post(f"/api/v1/jobs/{job_id}/input", headers=AUTH, json=answer)
    assert response.status_code == 200, response.text


def test_brand_to_social_posts_through_the_api_alone(chain_api: tuple[TestClient, BrandSite, Path]) -> None:
    from contentforge.services import Services

    api, site, run_dir = chain_api
    strategy = Services.from_settings(get_settings()).strategy

    research = api.post("/api/v1/brands/Trailbean/research", headers=AUTH, json={"urls": [site.url + "/"]})
    assert research.status_code == 202, research.text
    assert research.json()["work_queue"] == "default"
    _wait(api, research.json()["job_id"], run_dir)
    brand_id, _, dna = strategy.get_brand("Trailbean")
    assert brand_id == "trailbean" and dna is not None and dna.mission.source == site.url + "/"

    personas = api.post("/api/v1/brands/trailbean/personas", headers=AUTH, json={"seed": 4, "timeout_s": 600})
    assert personas.status_code == 202, personas.text
    job_id = personas.json()["job_id"]
    paused = _wait(api, job_id, run_dir, paused=True)
    schema = paused["form"]["schema"]
    candidates = schema["properties"]["selected"]["default"]
    assert len(candidates) >= 3, schema  # the proposed default selection, as the UI's form shows it
    assert all(c in paused["form"]["description"] for c in candidates), "the candidates are described"
    _answer(api, job_id, {"selected": candidates[:3], "reviewer": "ana"})
    _wait(api, job_id, run_dir)
    chosen = strategy.personas_of("trailbean")
    assert len(chosen) == 3

    topics = api.post(
        f"/api/v1/personas/{chosen[0]}/topics",
        headers=AUTH,
        json={"month": "2026-07", "brand": "trailbean", "count": 3, "timeout_s": 600},
    )
    assert topics.status_code == 202, topics.text
    job_id = topics.json()["job_id"]
    _wait(api, job_id, run_dir, paused=True)
    proposed = strategy.topics(persona_id=chosen[0], month="2026-07")
    assert len(proposed) == 3
    _answer(api, job_id, {"approved": [proposed[0].id], "reviewer": "ana"})
    _wait(api, job_id, run_dir)

    blog = api.post(f"/api/v1/topics/{proposed[0].id}/blog", headers=AUTH, json={"timeout_s": 600})
    assert blog.status_code == 202, blog.text
    job_id = blog.json()["job_id"]
    form = _wait(api, job_id, run_dir, paused=True)["form"]
    assert "approve" in form["schema"]["properties"]
    _answer(api, job_id, {"approve": True, "reviewer": "ben"})
    _wait(api, job_id, run_dir)
    post_id = f"post-{proposed[0].id}"
    assert strategy.get_blog_post(post_id).status.value == "approved"

    social = api.post(f"/api/v1/posts/{post_id}/social", headers=AUTH, json={"platforms": ["instagram", "x"]})
    assert social.status_code == 202, social.text
    done = _wait(api, social.json()["job_id"], run_dir)["job"]
    assert done["type"] == "social" and done["subject"]["post"] == post_id
    assert {post.platform.value for post in strategy.social_posts(post_id)} == {"instagram", "x"}


@pytest.fixture
def api_only(
    settings_env: Path, prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The API over the session's Prefect server with the deployments applied, and no worker."""
    from contentforge_api.app import create_app
    from contentforge_cli.stack import deploy_all
    from tasks.bootstrap import bootstrap_cluster

    monkeypatch.setenv("CONTENTFORGE_API_TOKEN", TOKEN)
    monkeypatch.setenv("CONTENTFORGE_API_HIGH_PRIORITY_ALLOWED", "false")
    get_settings.cache_clear()
    bootstrap_cluster(get_settings())
    deploy_all()
    with TestClient(create_app(get_settings())) as api:
        yield api


def test_chain_requests_are_checked_before_anything_starts_and_high_needs_the_permission(
    api_only: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contentforge_api.app import create_app

    api = api_only
    assert api.post("/api/v1/brands/nobody/personas", headers=AUTH, json={}).status_code == 404
    assert (
        api.post("/api/v1/personas/nobody/topics", headers=AUTH, json={"month": "2026-07"}).status_code == 404
    )
    assert api.post("/api/v1/topics/nope/blog", headers=AUTH, json={}).status_code == 404
    assert api.post("/api/v1/posts/nope/social", headers=AUTH, json={}).status_code == 404
    bad_month = api.post("/api/v1/personas/x/topics", headers=AUTH, json={"month": "2026-13"})
    assert bad_month.status_code == 422
    brand = f"Brand {uuid.uuid4().hex[:8]}"
    body = {"urls": ["https://example.com/"], "priority": "high"}
    high = api.post(f"/api/v1/brands/{brand}/research", headers=AUTH, json=body)
    assert (
        high.status_code == 403
        and "CONTENTFORGE_API_HIGH_PRIORITY_ALLOWED" in high.json()["error"]["message"]
    )
    assert api.get("/api/v1/jobs", headers=AUTH, params={"brand": brand}).json()["jobs"] == [], (
        "nothing started"
    )

    monkeypatch.setenv("CONTENTFORGE_API_HIGH_PRIORITY_ALLOWED", "true")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as allowed:
        started = allowed.post(f"/api/v1/brands/{brand}/research", headers=AUTH, json=body)
        assert started.status_code == 202, started.text
        assert (started.json()["work_queue"], started.json()["priority"]) == ("priority", "high")
        job = allowed.get(started.json()["job_url"], headers=AUTH).json()
        assert (job["work_queue"], job["priority"], job["type"]) == ("priority", "high", "research")
        normal = allowed.post(
            f"/api/v1/brands/{brand}/research", headers=AUTH, json=body | {"priority": "low"}
        )
        assert normal.json()["work_queue"] == "default"
        for launched in (started, normal):  # nothing runs them here: cancelled at once
            cancelled = allowed.post(f"{launched.json()['job_url']}/cancel", headers=AUTH)
            assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled", cancelled.text
