"""A batch's MANUAL, AUTO and ASSISTED modes on the tiny pipeline, against the session's Prefect server.

A registry LoRA built in code for the tiny pipeline ("seaside-light", described for beach and surf) is
what the recommender may pick. ASSISTED is paused for real and answered through
``POST /api/v1/jobs/{id}/input``: a refused answer (schema), an unusable one (unknown LoRA: the run
asks again), then an edit, which is what the stored records show was generated.
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

from contentforge.config import get_settings
from contentforge.db import PieceRow
from contentforge.personas import sample_persona

pytestmark = pytest.mark.slow
TOKEN = "modes-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMALL = {"num_pieces": 3, "include_hooks": False, "safety_check": False, "seed": 5}


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from contentforge.images.tiny import build_tiny_lora, build_tiny_sdxl_pipeline

    folder = tmp_path_factory.mktemp("mode-loras")
    return build_tiny_lora(build_tiny_sdxl_pipeline(0), folder / "seaside.safetensors", 1)


@pytest.fixture
def flow_env(settings_env: Path, prefect_server: str, lora_file: Path) -> Any:
    from contentforge.db.registry import InstalledModel, ModelRegistry
    from tasks import resources
    from tasks.bootstrap import ensure_concurrency_limit

    settings = get_settings()
    ensure_concurrency_limit(settings.concurrency_limit_name, settings.generation_slots)
    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    ModelRegistry(repo.sessions).add(
        InstalledModel(
            name="seaside-light",
            kind="lora",
            source="local",
            source_ref=str(lora_file),
            path=str(lora_file),
            family="sdxl",
            family_reason="test",
            sha256="0" * 64,
            size_bytes=lora_file.stat().st_size,
            trigger_words=("sunlit seaside",),
            recommended_weight=0.6,
            tags=("beach", "surf", "ocean"),
            description="sunny beach, surfing and ocean waves at the seaside, sand and summer light",
        )
    )
    return repo


def _records(repo: Any, batch_id: str) -> list[PieceRow]:
    rows = repo.pieces(batch_id=batch_id)
    assert rows and all(row.record is not None for row in rows), [row.error for row in rows]
    return list(rows)


def test_manual_is_unchanged_and_auto_records_its_explanation(flow_env: Any) -> None:
    from flows.produce_content_batch import produce_content_batch

    settings = get_settings()
    manual = produce_content_batch(persona="mia-fit", batch_id=f"manual-{uuid.uuid4().hex[:8]}", **SMALL)
    for row in _records(flow_env, manual["batch_id"]):
        record = row.record
        assert record is not None and "decision" not in record.extra and "mode" not in record.extra
        assert (record.steps, record.width, record.height) == (
            settings.image_steps,
            settings.image_width,
            settings.image_height,
        )
        assert record.loras == ()

    auto = produce_content_batch(
        persona="mia-fit", batch_id=f"auto-{uuid.uuid4().hex[:8]}", mode="auto", **SMALL
    )
    rows = _records(flow_env, auto["batch_id"])
    for row in rows:
        record = row.record
        assert record is not None and record.extra["mode"] == "auto"
        assert f"{record.steps} steps" in record.extra["decision"]  # the line names what was generated
        assert record.steps in (2, 4, 8)  # the optimizer's range for the tiny pipeline
        # Instagram prefers 4:5 (in multiples of 8), not the configured square.
        assert record.height > record.width and f"{record.width}x{record.height}" in record.extra["decision"]
    chosen = [row for row in rows if row.record and row.record.loras]
    assert chosen, [row.record.extra["decision"] for row in rows if row.record]
    for row in chosen:
        assert row.record is not None
        assert "LoRA seaside-light" in row.record.extra["decision"]
        assert row.record.prompt.startswith("sunlit seaside, ")  # its trigger word, as AUTO adds it


def test_a_refused_mode_fails_before_any_work(flow_env: Any) -> None:
    from contentforge.errors import InvalidInput
    from flows.produce_content_batch import produce_content_batch

    with pytest.raises(InvalidInput, match="mode 'clever': use manual, auto or assisted"):
        produce_content_batch(persona="mia-fit", mode="clever", **SMALL)
    assert flow_env.latest_batches() == []


@pytest.fixture
def api(flow_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from contentforge_api.app import create_app

    monkeypatch.setenv("CONTENTFORGE_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as client:
        yield client


def _paused_form(api: TestClient, job_id: str, after: str = "", timeout_s: float = 120) -> dict[str, Any]:
    """The job's form once it waits for input (and its description, if ``after``, mentions it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = api.get(f"/api/v1/jobs/{job_id}", headers=AUTH).json()
        assert job["status"] not in ("completed", "failed", "crashed", "cancelled"), job
        if job["waiting_for_input"]:
            form = api.get(f"/api/v1/jobs/{job_id}/input", headers=AUTH)
            if form.status_code == 200 and after in (form.json().get("description") or ""):
                return dict(form.json())
        time.sleep(0.3)
    pytest.fail(f"job {job_id} never waited for input ({after!r})")


def test_assisted_pauses_and_the_edit_sent_through_the_api_is_generated(
    api: TestClient, flow_env: Any, lora_file: Path
) -> None:
    from flows.produce_content_batch import produce_content_batch

    batch_id = f"assisted-{uuid.uuid4().hex[:8]}"
    outcome: dict[str, Any] = {}

    def run() -> None:
        from prefect import tags

        try:
            with tags(f"batch:{batch_id}"):  # as the CLI and API tag their runs: the jobs API finds it so
                outcome["stats"] = produce_content_batch(
                    persona="mia-fit", batch_id=batch_id, mode="assisted", **SMALL
                )
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="assisted-batch", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    jobs: list[dict[str, Any]] = []
    while not jobs and time.monotonic() < deadline:
        jobs = api.get("/api/v1/jobs", headers=AUTH, params={"batch": batch_id}).json()["jobs"]
        time.sleep(0.2)
    assert jobs, outcome
    job_id = jobs[0]["id"]
    form = _paused_form(api, job_id)
    assert "Recommended plan for batch" in form["description"] and "| template |" in form["description"]
    assert all(
        row.status.value == "planned" and row.storage_key is None
        for row in flow_env.pieces(batch_id=batch_id)
    )
    edited_template = flow_env.pieces(batch_id=batch_id)[0].template_id

    # The schema refuses a width that is no multiple of 8: Prefect answers no, the run stays paused.
    bad = {"edits": [{"template": edited_template, "width": 100}]}
    refused = api.post(f"/api/v1/jobs/{job_id}/input", headers=AUTH, json=bad)
    assert refused.status_code == 422, refused.text
    # An unknown LoRA passes the schema; the run asks again, saying why.
    unknown = {"edits": [{"template": edited_template, "loras": [{"name": "no-such-lora", "weight": 0.5}]}]}
    assert api.post(f"/api/v1/jobs/{job_id}/input", headers=AUTH, json=unknown).status_code == 200
    again = _paused_form(api, job_id, after="could not be used")
    assert "LoRA 'no-such-lora' is not installed for sdxl" in again["description"]

    edit = {
        "template": edited_template,
        "loras": [{"name": "seaside-light", "weight": 0.5}],
        "steps": 3,
        "guidance_scale": 4.5,
    }
    answered = api.post(
        f"/api/v1/jobs/{job_id}/input", headers=AUTH, json={"edits": [edit], "reviewer": "eve"}
    )
    assert answered.status_code == 200, answered.text
    thread.join(240)
    assert "stats" in outcome, outcome

    rows = _records(flow_env, batch_id)
    for row in rows:
        record = row.record
        assert record is not None and record.extra["mode"] == "assisted" and record.extra["decision"]
        if row.template_id == edited_template:
            assert (record.steps, record.guidance_scale) == (3, 4.5)
            assert [(lora.source, lora.scale) for lora in record.loras] == [(str(lora_file), 0.5)]
            assert record.extra["decision"].startswith(
                "edited by a reviewer (LoRAs seaside-light 0.50, steps 3"
            )
        else:
            assert record.steps in (2, 4, 8) and "edited" not in record.extra["decision"]
