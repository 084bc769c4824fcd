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
from support.loras import register_lora

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
    from contentforge.db.registry import ModelRegistry
    from tasks import resources
    from tasks.bootstrap import ensure_concurrency_limit

    settings = get_settings()
    ensure_concurrency_limit(settings.concurrency_limit_name, settings.generation_slots)
    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    register_lora(
        ModelRegistry(repo.sessions),
        "seaside-light",
        lora_file,
        trigger="sunlit seaside",
        tags=("beach", "surf", "ocean"),
        description="sunny beach, surfing and ocean waves at the seaside, sand and summer light",
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


def test_a_resumed_auto_batch_generates_the_plans_it_saved_before_it_stopped(flow_env: Any) -> None:
    """A run that stopped after saving its plans (before any image): the resume generates exactly those
    plans, although feedback meanwhile turned against the recommended LoRA, and plans nothing again."""
    from contentforge.batch import validate_batch_request
    from contentforge.db.registry import ModelRegistry
    from flows.produce_content_batch import produce_content_batch
    from tasks import resources
    from tasks.mode_plans import recommend_plans, save_plans
    from tasks.planning import select_templates_and_prompts, take_batch

    batch_id = f"resumed-{uuid.uuid4().hex[:8]}"
    request = validate_batch_request(
        flow_env, get_settings(), persona="mia-fit", platform="instagram", tier_mix=None, batch_id=batch_id,
        mode="auto", **SMALL,
    )  # fmt: skip
    take_batch.fn(request, batch_id, None, "stopped-run")
    piece_ids = select_templates_and_prompts.fn(request, batch_id)
    saved = recommend_plans.fn(request, batch_id, piece_ids)
    assert save_plans.fn(batch_id, "auto", saved) == len(piece_ids)
    flow_env.release_batch_lease(batch_id, "stopped-run")  # the run is gone; its plans stay
    assert any(plan.lora_names for plan in saved.values())
    registry = ModelRegistry(resources.repository().sessions)
    for _ in range(6):  # a fresh plan would now leave seaside-light out
        registry.record_feedback("lora", "seaside-light", approved=False, rating=1)

    produce_content_batch(persona="mia-fit", batch_id=batch_id, mode="auto", **SMALL)
    for row in _records(flow_env, batch_id):
        record, plan = row.record, saved[row.id]
        assert record is not None
        assert (record.prompt, record.steps, record.width, record.height) == (
            plan.request.prompt,
            plan.request.steps,
            plan.request.width,
            plan.request.height,
        )
        assert [(lora.source, lora.scale) for lora in record.loras] == [
            (lora.source, lora.scale) for lora in plan.request.loras
        ]
        assert record.extra["decision"] == plan.explanation


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
    # Shown literally: Markdown's characters in the refused answer are escaped, not interpreted.
    assert "LoRA 'no\\-such\\-lora' is not installed for sdxl" in again["description"]

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


def test_review_and_ratings_teach_the_next_recommendation_once_per_rater(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decisions and ratings from the API (and the CLI) move the LoRA scores until AUTO picks the other
    LoRA for the same prompt; a repeated rating by the same rater counts nothing."""
    from support.review import make_batch
    from typer.testing import CliRunner

    from contentforge.db.models import PieceORM
    from contentforge.db.registry import InstalledModel, ModelRegistry
    from contentforge.images.protocol import ImageRequest
    from contentforge.models.modes import Advisor
    from contentforge_api.app import create_app
    from contentforge_cli.main import app as cli
    from tasks import resources

    monkeypatch.setenv("CONTENTFORGE_API_TOKEN", TOKEN)
    monkeypatch.setenv("CONTENTFORGE_LORA_MAX_COUNT", "1")
    get_settings.cache_clear()
    settings, repo = get_settings(), resources.repository()
    registry = ModelRegistry(repo.sessions)
    descriptions = {
        "film-grain": "Analog 35mm film photography with visible grain",
        "analog-look": "Faded analog film photo look with light grain",
    }
    for name, description in descriptions.items():
        registry.add(
            InstalledModel(
                name=name, kind="lora", source="local", source_ref=name, path=f"/loras/{name}.safetensors",
                family="sdxl", family_reason="test", sha256="0" * 64, size_bytes=1, description=description,
            )
        )  # fmt: skip
    prompt = "a cat on a windowsill, grainy 35mm film"
    base = ImageRequest(prompt=prompt, seed=1, steps=4, guidance_scale=5.0, width=128, height=128)

    def recommended() -> str:
        plan = Advisor.build(settings, ModelRegistry(repo.sessions)).advise(base, prompt)
        assert len(plan.lora_names) == 1, plan
        return plan.lora_names[0]

    first = recommended()
    other = next(name for name in descriptions if name != first)
    make_batch(repo, settings, "fb", ["score:hate=0.47"] * 8)  # eight pieces waiting for review
    with repo.sessions.write() as session:  # the first four were made with `first`, the rest with `other`
        for index in range(8):
            row = session.get(PieceORM, f"fb-{index:03d}")
            assert row is not None and row.generation_record is not None
            lora = first if index < 4 else other
            row.generation_record = {
                **row.generation_record,
                "loras": [{"source": f"/loras/{lora}.safetensors", "scale": 0.8}],
            }

    with TestClient(create_app(settings)) as api:
        for index in range(8):
            body: dict[str, Any] = (
                {"decision": "reject", "reason": "too grainy", "rating": 1}
                if index < 4
                else {"decision": "approve", "rating": 5}
            )
            answer = api.post(f"/api/v1/pieces/fb-{index:03d}/review", headers=AUTH, json=body)
            assert answer.status_code == 200, answer.text
            lora = first if index < 4 else other
            assert f"lora:{lora}" in answer.json()["learned"]
        counted = registry.feedback("lora")
        # The same rater again: refused, nothing counted twice.
        again = api.post("/api/v1/pieces/fb-000/rating", headers=AUTH, json={"rating": 5})
        assert again.status_code == 409 and "already rated 1" in again.json()["error"]["message"], again.text
        assert registry.feedback("lora") == counted
        # Another display name through the same token is the same rater: a header cannot multiply ratings.
        renamed = api.post(
            "/api/v1/pieces/fb-000/rating",
            headers={**AUTH, "X-ContentForge-Reviewer": "someone else"},
            json={"rating": 5},
        )
        assert renamed.status_code == 409 and registry.feedback("lora") == counted, renamed.text
        assert api.post("/api/v1/pieces/fb-000/rating", headers=AUTH, json={"rating": 6}).status_code == 422

    assert counted[first].rejections == 4 and counted[other].approvals == 4
    assert recommended() == other

    runner = CliRunner()
    rated = runner.invoke(cli, ["review", "rate", "fb-004", "--rating", "4", "--reviewer", "rita"])
    assert rated.exit_code == 0, rated.output
    assert f"lora:{other}" in rated.output
    twice = runner.invoke(cli, ["review", "rate", "fb-004", "--rating", "4", "--reviewer", "rita"])
    assert twice.exit_code != 0 and "already rated 4 by rita" in twice.output
    assert registry.feedback("lora")[other].rating_count == counted[other].rating_count + 1


def test_the_api_and_cli_pass_a_batch_mode_on_and_refuse_an_unknown_one(
    settings_env: Path, prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /content/batch hands ``mode`` to the run (and leaves a MANUAL run's parameters as they were);
    an unknown mode is one line from either, before any run or server starts."""
    from support.recording_launcher import RecordingLauncher
    from typer.testing import CliRunner

    from contentforge_api.app import create_app
    from contentforge_cli.main import app as cli
    from tasks import resources

    monkeypatch.setenv("CONTENTFORGE_API_TOKEN", TOKEN)
    monkeypatch.setenv("CONTENTFORGE_IMAGE_PROFILE", "fixed-latency")  # validation builds no pipeline
    get_settings.cache_clear()
    resources.repository().upsert_persona(sample_persona())
    launcher = RecordingLauncher()
    with TestClient(create_app(get_settings(), launcher=launcher)) as api:
        for mode in ("assisted", "manual"):
            started = api.post(
                "/api/v1/content/batch",
                headers=AUTH,
                json={"persona": "mia-fit", "num_pieces": 2, "mode": mode},
            )
            assert started.status_code == 202, started.text
        refused = api.post(
            "/api/v1/content/batch", headers=AUTH, json={"persona": "mia-fit", "mode": "clever"}
        )
        assert refused.status_code == 422
        one = api.post("/api/v1/content/generate", headers=AUTH, json={"persona": "mia-fit", "mode": "auto"})
        assert one.status_code == 202, one.text
    assisted, manual, single = (launch.parameters for launch in launcher.launches)
    assert assisted["mode"] == "assisted" and "mode" not in manual
    assert single["mode"] == "auto" and single["num_pieces"] == 1

    cli_refused = CliRunner().invoke(cli, ["produce", "mia-fit", "-n", "2", "--mode", "clever"])
    lines = cli_refused.output.strip().splitlines()
    assert cli_refused.exit_code == 2 and len(lines) == 1, lines
    assert "use manual, auto or assisted" in lines[0]


def test_the_gallery_shows_the_explanation_and_rates_a_piece_once(settings_env: Path, tmp_path: Path) -> None:
    """In headless Chromium: a piece's AUTO explanation is on its card; clicking 4 rates it (the parameter
    scores move), and a second click is refused with the API's message and counts nothing."""
    import support.browser
    from selenium.webdriver.common.by import By
    from support.api import build_world
    from support.browser import headless_chromium, served_app, wait

    from contentforge.config import Settings
    from contentforge.db.models import BatchORM
    from contentforge.db.registry import ModelRegistry
    from contentforge_api import create_app

    support.browser.browser_or_skip()
    token = "gallery-modes-token-0123456789"
    settings = Settings(_env_file=None, data_dir=settings_env, api_token=token, image_profile="fixed-latency")
    world = build_world(settings)
    line = "LoRA film-grain 0.45 (similarity 0.71 to 'grainy 35mm'), 4 steps (balanced priority)"
    with world.repo.sessions.write() as session:
        batch = session.get(BatchORM, "b1")
        assert batch is not None
        batch.params = {**batch.params, "mode": "auto", "decisions": {"b1-000": line}}
    registry = ModelRegistry(world.repo.sessions)
    with (
        served_app(create_app(settings), "gallery-modes-uvicorn") as url,
        headless_chromium(tmp_path / "chromium", "--window-size=1400,1000") as driver,
    ):
        driver.get(f"{url}/gallery/batches/b1")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.ID, "use-token").click()
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "article.piece"), "pieces not rendered")
        card = driver.find_element(By.CSS_SELECTOR, 'article[data-piece-id="b1-000"]')
        assert card.find_element(By.CSS_SELECTOR, ".decision").text == line
        assert driver.find_elements(By.CSS_SELECTOR, 'article[data-piece-id="b1-001"] .decision') == []

        def rate_four() -> None:
            card = driver.find_element(By.CSS_SELECTOR, 'article[data-piece-id="b1-000"]')
            card.find_element(By.CSS_SELECTOR, '.rating button[title="rate 4 of 5"]').click()

        def rating_message(d: Any) -> str:
            return str(
                d.find_element(By.CSS_SELECTOR, 'article[data-piece-id="b1-000"] .rating .message').text
            )

        rate_four()
        wait(driver, lambda d: rating_message(d).startswith("rated 4 by"), "rating not shown")
        learned = registry.feedback("param")
        assert sum(score.rating_count for score in learned.values()) == 2  # its steps and guidance
        rate_four()
        wait(driver, lambda d: "already rated 4" in rating_message(d), "second rating not refused")
        assert registry.feedback("param") == learned


def test_a_refused_answer_is_shown_literally_in_the_next_form() -> None:
    """An answer's own words (here a 'template id' built as a Markdown link) come back as text, not markup."""
    from flows.batch_modes import plan_markdown

    hostile = "template '](javascript:alert(1)) [x' is **not** in this batch's plan\n# heading | cell"
    form = plan_markdown("b1", {}, {}, hostile)
    first_line = form.splitlines()[0]
    assert "](javascript:" not in first_line and "**not**" not in first_line and "\n# heading" not in form
    # Unescaped, the same characters are all still there for the reader.
    assert first_line.replace("\\", "").endswith(
        "template '](javascript:alert(1)) [x' is **not** in this batch's plan # heading | cell. Answer again."
    )
