"""Per-request control (issue 16, item 9): a scheduler for one request only, template or custom prompt
and parameters through the API and ``contentforge produce`` (refused in one line before any model
loads), variations as pieces derived from their parent, and ``registry:<name>`` through the database
registry."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from contentforge.config import Settings
from contentforge.images.protocol import ImageRequest


def _tiny(settings_env: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"data_dir": settings_env, "image_profile": "tiny", "image_replicas": 2}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def _request(**changes: object) -> ImageRequest:
    base = ImageRequest(prompt="a lighthouse", seed=3, steps=2, guidance_scale=5.0, width=64, height=64)
    return base.model_copy(update=changes)


def test_a_scheduler_applies_to_its_request_only_and_is_recorded(settings_env: Path) -> None:
    from contentforge.images.factory import build_image_backend

    backend = build_image_backend(_tiny(settings_env))
    before = backend.generate(_request())
    assert before.record.scheduler == "EulerDiscreteScheduler"  # the tiny SDXL's own
    chosen = backend.generate(_request(scheduler="EulerAncestralDiscreteScheduler"))
    assert chosen.record.scheduler == "EulerAncestralDiscreteScheduler"
    assert not np.array_equal(np.asarray(chosen.image), np.asarray(before.image))
    after = backend.generate(_request())
    assert after.record.scheduler == "EulerDiscreteScheduler"
    assert np.array_equal(np.asarray(after.image), np.asarray(before.image))  # nothing leaked

    # Two requests at once on the two replicas of one pool: each runs (and records) its own.
    results: dict[str, str | None] = {}

    def run(name: str | None) -> None:
        results[str(name)] = backend.generate(_request(scheduler=name)).record.scheduler

    threads = [threading.Thread(target=run, args=(name,)) for name in ("DDIMScheduler", None)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"DDIMScheduler": "DDIMScheduler", "None": "EulerDiscreteScheduler"}


def test_replay_carries_the_recorded_scheduler_and_checks_refuse_unfit_ones(settings_env: Path) -> None:
    from contentforge.errors import InvalidInput
    from contentforge.images.factory import build_image_backend
    from contentforge.models.requests import checked_for_settings, checked_params, replay_request

    generated = build_image_backend(_tiny(settings_env)).generate(_request(scheduler="DDIMScheduler"))
    assert replay_request(generated.record).scheduler == "DDIMScheduler"
    assert checked_params("sdxl", scheduler="euler_a").scheduler == "EulerAncestralDiscreteScheduler"
    with pytest.raises(InvalidInput, match="flux models take flow_match_euler"):
        checked_params("flux", scheduler="ddim")
    with pytest.raises(InvalidInput, match="scheduler: the fixed-latency image profile picks its own"):
        checked_for_settings(_tiny(settings_env, image_profile="fixed-latency"), scheduler="euler")


def test_registry_names_resolve_through_the_database_registry(settings_env: Path, tmp_path: Path) -> None:
    from contentforge.db.registry import ModelRegistry
    from contentforge.domain import LoraSpec
    from contentforge.errors import InvalidLora
    from contentforge.images.loras import resolve_persona_lora
    from contentforge.images.tiny import build_tiny_lora, build_tiny_sdxl_pipeline
    from contentforge.models.install import install_local
    from contentforge_cli import context

    lora = build_tiny_lora(build_tiny_sdxl_pipeline(0), tmp_path / "grain.safetensors", seed=2)
    registry = ModelRegistry(context.services().sessions)
    install_local(lora, kind="lora", registry=registry, name="grain", trigger_words=("grainy35",), weight=0.6)
    settings = _tiny(settings_env)
    resolved = resolve_persona_lora(LoraSpec(source="registry:grain"), settings)
    assert (resolved.source, resolved.trigger_word, resolved.scale) == (str(lora), "grainy35", 0.6)
    assert resolve_persona_lora(LoraSpec(source="registry:grain", scale=0.3), settings).scale == 0.3
    # A YAML registry that lacks the name still finds the installed one.
    yaml_file = tmp_path / "loras.yaml"
    yaml_file.write_text(f"other: {{source: {lora}, base_family: sdxl}}\n")
    with_yaml = _tiny(settings_env, image_lora_registry=yaml_file)
    assert resolve_persona_lora(LoraSpec(source="registry:grain"), with_yaml).source == str(lora)
    with pytest.raises(InvalidLora, match=r"unknown LoRA 'nope' \(registered: other\) and no LoRA"):
        resolve_persona_lora(LoraSpec(source="registry:nope"), with_yaml)
    with pytest.raises(InvalidLora, match="trained for sdxl, but the model is flux"):
        resolve_persona_lora(LoraSpec(source="registry:grain"), _tiny(settings_env, image_family="flux"))
    lora.write_bytes(lora.read_bytes()[:-4] + b"    ")  # same header, other weights
    with pytest.raises(InvalidLora, match="changed since it was installed"):
        resolve_persona_lora(LoraSpec(source="registry:grain"), settings)


# --- through the API and contentforge produce ---------------------------------------------------------

FULL = "per-request-full-token-0123456789"
AUTH = {"Authorization": f"Bearer {FULL}"}


def _api(settings_env: Path, **overrides: object):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient
    from support.api import build_world
    from support.recording_launcher import RecordingLauncher

    from contentforge_api import create_app

    settings = _tiny(settings_env, api_token=FULL, **overrides)
    world = build_world(settings)
    launcher = RecordingLauncher()
    return TestClient(create_app(settings, launcher=launcher)), launcher, world


def test_api_generate_takes_a_template_or_prompt_and_parameters_for_its_piece(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contentforge.images import pool as pools

    def no_model(*_: object, **__: object) -> None:
        raise AssertionError("a pipeline was loaded to check a request")

    monkeypatch.setattr(pools, "get_pool", no_model)  # validation builds the backend object only
    client, launcher, _ = _api(settings_env)
    body = {"persona": "ava", "template_id": "FIT-006", "steps": 3, "guidance_scale": 2.5, "width": 96}
    started = client.post(
        "/api/v1/content/generate",
        headers=AUTH,
        json=body | {"height": 64, "scheduler": "euler_a", "negative_prompt": "fog"},
    )
    assert started.status_code == 202, started.text
    parameters = launcher.launches[0].parameters
    assert parameters["template_id"] == "FIT-006"
    assert parameters["tier_mix"] == {"safe": 0.0, "suggestive": 1.0}  # the template's tier
    assert parameters["image_params"] == {
        "negative_prompt": "fog", "steps": 3, "guidance_scale": 2.5, "width": 96, "height": 64,
        "scheduler": "EulerAncestralDiscreteScheduler",
    }  # fmt: skip
    plain = client.post("/api/v1/content/generate", headers=AUTH, json={"persona": "ava"})
    assert plain.status_code == 202 and "image_params" not in launcher.launches[1].parameters

    schema = client.get("/api/v1/openapi.json", headers=AUTH).json()["components"]["schemas"]
    documented = schema["GenerateRequest"]["properties"]
    assert documented["width"]["anyOf"][0]["multipleOf"] == 8
    assert documented["steps"]["anyOf"][0]["maximum"] == 150
    assert "euler_a" in documented["scheduler"]["anyOf"][0]["enum"]
    refusals = [
        ({"width": 100}, 422, "multiple of 8"),  # the documented schema
        ({"template_id": "FIT-999"}, 422, "FIT-999"),
        ({"scheduler": "flow_match_euler"}, 422, "sdxl models take euler"),
        ({"prompt": "a nude runner"}, 422, "content policy forbids"),
        ({"negative_prompt": "x", "prompt": "   "}, 422, "prompt"),
    ]
    for extra, code, message in refusals:
        refused = client.post("/api/v1/content/generate", headers=AUTH, json={"persona": "ava"} | extra)
        assert refused.status_code == code, refused.text
        error = refused.json()["error"]["message"]
        assert message in error and "\n" not in error, error
    assert len(launcher.launches) == 2  # nothing started for a refused request (and no model loaded)


def test_api_refuses_what_the_configured_family_cannot_do(settings_env: Path) -> None:
    client, launcher, _ = _api(settings_env, image_family="sd15")
    refused = client.post("/api/v1/content/generate", headers=AUTH, json={"persona": "ava", "width": 1536})
    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == "width 1536: sd15 models take 64-1024 px"
    assert launcher.launches == []


def _replayable_piece(world, piece_id: str = "v1-000") -> str:  # type: ignore[no-untyped-def]
    """A stored piece whose record the configured tiny backend could replay (no image is made)."""
    from datetime import UTC, datetime

    from contentforge.db import PlannedPiece
    from contentforge.domain import GenerationRecord
    from contentforge.images.tiny import tiny_model_id

    repo = world.repo
    repo.create_batch(
        batch_id="v1", persona_id="ava", platform="instagram", num_pieces=1,
        tier_mix={"safe": 1.0}, seed=1, params={}, flow_run_id=None,
    )  # fmt: skip
    repo.add_planned_pieces("v1", [PlannedPiece(piece_id, 0, "FIT-001", "safe", "a runner", "", 11)])
    record = GenerationRecord(
        backend="tiny-sdxl", model=tiny_model_id(0), prompt="a runner", seed=11, steps=4,
        guidance_scale=5.0, width=64, height=64, scheduler="EulerDiscreteScheduler",
    )  # fmt: skip
    now = datetime.now(UTC)
    repo.mark_generated(
        piece_id, record=record, storage_key="k", url="u", content_sha256="0" * 64,
        queued_at=now, started_at=now, finished_at=now, generation_seconds=0.1, cost_usd=0.0,
    )  # fmt: skip
    return piece_id


def test_api_variations_are_planned_once_as_pieces_and_listed(settings_env: Path) -> None:
    from contentforge.piece_variations import variation_batch_id

    client, launcher, world = _api(settings_env)
    parent = _replayable_piece(world)
    url = f"/api/v1/content/{parent}/variations"
    for _ in range(2):  # a retry names the same variation batch and plans nothing more
        started = client.post(url, headers=AUTH, json={"count": 2, "vary": "guidance"})
        assert started.status_code == 202, started.text
    batch_id = variation_batch_id(parent, "guidance", 2)
    assert [launch.parameters["batch_id"] for launch in launcher.launches] == [batch_id, batch_id]
    assert launcher.launches[0].parameters["num_pieces"] == 2
    rows = world.repo.variations_of(parent)
    assert [(r.parent_piece_id, r.guidance_scale, r.seed, r.scheduler) for r in rows] == [
        (parent, 5.75, 11, "EulerDiscreteScheduler"),
        (parent, 4.25, 11, "EulerDiscreteScheduler"),
    ]
    listed = client.get(url, headers=AUTH).json()
    assert [v["id"] for v in listed["variations"]] == [r.id for r in rows]
    child = client.get(f"/api/v1/content/{rows[0].id}/variations", headers=AUTH).json()
    assert child["parent_piece_id"] == parent and child["variations"] == []
    shown = client.get(f"/api/v1/pieces/{parent}", headers=AUTH).json()
    assert shown["variation_ids"] == [r.id for r in rows] and shown["parent_piece_id"] is None
    assert client.get(f"/api/v1/pieces/{rows[1].id}", headers=AUTH).json()["parent_piece_id"] == parent
    # Refused in one line before anything is written or started.
    no_lora = client.post(url, headers=AUTH, json={"vary": "lora-weight"})
    assert no_lora.status_code == 422 and "without a LoRA" in no_lora.json()["error"]["message"]
    unmade = client.post("/api/v1/content/b1-005/variations", headers=AUTH, json={})
    assert unmade.status_code == 422 and "no image yet" in unmade.json()["error"]["message"]
    other = client.post("/api/v1/content/b1-000/variations", headers=AUTH, json={})
    assert other.status_code == 422 and "generated by tiny with tiny" in other.json()["error"]["message"]
    assert client.post("/api/v1/content/nope-000/variations", headers=AUTH, json={}).status_code == 404
    assert len(launcher.launches) == 2 and len(world.repo.variations_of(parent)) == 2


def test_api_variations_refused_by_the_batch_checks_write_nothing(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch checks (persona limits…) run on the plan before its batch and pieces are written."""
    import contentforge_api.routes.content as content_routes
    from contentforge.errors import InvalidInput
    from contentforge.piece_variations import variation_batch_id

    client, launcher, world = _api(settings_env)
    parent = _replayable_piece(world)

    def over_the_limit(*args: object, **kwargs: object) -> object:
        raise InvalidInput("persona ava may make at most 0 pieces a day")

    monkeypatch.setattr(content_routes, "validate_batch_request", over_the_limit)
    refused = client.post(f"/api/v1/content/{parent}/variations", headers=AUTH, json={"count": 2})
    assert refused.status_code == 422 and "at most 0 pieces" in refused.json()["error"]["message"]
    assert world.repo.variations_of(parent) == [] and launcher.launches == []
    assert world.repo.persona_of_batch(variation_batch_id(parent, "seed", 2)) is None


def test_a_request_written_into_its_piece_reaches_the_pipeline(settings_env: Path) -> None:
    import uuid

    from contentforge.batch import BatchRequest, generate_piece, plan_pieces
    from contentforge.db import Repository, make_engine, migrate
    from contentforge.domain import Platform, TierMix
    from contentforge.images.factory import build_image_backend
    from contentforge.personas import sample_persona
    from contentforge.piece_requests import apply_piece_request, check_piece_request

    settings = _tiny(settings_env)
    migrate(settings.resolved_database_url)
    repo = Repository(make_engine(settings.resolved_database_url))
    persona = sample_persona()
    repo.upsert_persona(persona)
    batch_id = uuid.uuid4().hex
    mix = TierMix(safe=1.0, suggestive=0.0)
    repo.create_batch(
        batch_id=batch_id, persona_id=persona.id, platform="instagram", num_pieces=1,
        tier_mix=mix.model_dump(), seed=1, params={}, flow_run_id=None,
    )  # fmt: skip
    request = BatchRequest(persona, 1, Platform.instagram, mix, 1)
    repo.add_planned_pieces(batch_id, plan_pieces(request, batch_id))
    piece_ids = [p.id for p in repo.pieces(batch_id=batch_id)]
    asked = check_piece_request(
        settings, prompt="a red bicycle", negative_prompt="fog", steps=3, width=96, height=64,
        scheduler="ddim",
    )  # fmt: skip
    assert apply_piece_request(repo, settings, persona, piece_ids, asked) == 1
    piece = repo.get_piece(piece_ids[0])
    assert piece is not None
    record = generate_piece(piece, persona, build_image_backend(settings), settings).generated.record
    assert (record.steps, record.width, record.height, record.scheduler) == (3, 96, 64, "DDIMScheduler")
    trigger = persona.trigger_word or ""
    assert record.prompt.endswith("a red bicycle") and record.prompt.startswith(trigger)
    assert record.negative_prompt.startswith("fog, nsfw")  # the safety negatives stay
    assert record.guidance_scale == settings.image_guidance  # not asked for: the setting's


def test_produce_refuses_bad_parameters_before_the_server_starts(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import contentforge.images.factory as factory
    import contentforge_cli.runtime as runtime
    from contentforge_cli.main import app

    def nothing(*_: object, **__: object) -> None:
        raise AssertionError("a refused request started a server or built a model")

    monkeypatch.setattr(factory, "build_image_backend", nothing)
    monkeypatch.setattr(runtime, "connect", nothing)
    cases = [
        (["--width", "100"], "width 100: must be a multiple of 8"),
        (["--steps", "0"], "steps: Input should be greater than or equal to 1"),
        (["--scheduler", "fast"], "scheduler 'fast': sdxl models take euler"),
        (["--template", "FIT-999"], "FIT-999"),
        (["--template", "FIT-001", "--tier-mix", "safe=1"], "leave out --tier-mix"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, ["produce", "mia-fit", "-n", "1", *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.slow
def test_the_batch_flow_generates_a_requested_piece_and_its_planned_variations(
    settings_env: Path, prefect_server: str
) -> None:
    """The run the API starts: a template, a prompt and parameters, then variations of that piece."""
    from contentforge.config import get_settings
    from contentforge.domain import PieceStatus
    from contentforge.personas import sample_persona
    from contentforge.piece_variations import plan_variations
    from flows.produce_content_batch import produce_content_batch
    from tasks import resources
    from tasks.bootstrap import ensure_concurrency_limit

    settings = get_settings()
    ensure_concurrency_limit(settings.concurrency_limit_name, settings.generation_slots)
    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    params = {"prompt": "a red bicycle at dawn", "steps": 3, "width": 96, "height": 64, "scheduler": "ddim"}
    stats = produce_content_batch(
        persona="mia-fit", num_pieces=1, template_id="FIT-002", image_params=params, include_hooks=False
    )
    (piece,) = repo.pieces(batch_id=stats["batch_id"])
    record = piece.record
    assert piece.template_id == "FIT-002" and record is not None
    assert (record.steps, record.width, record.height, record.scheduler) == (3, 96, 64, "DDIMScheduler")
    assert record.prompt.endswith("a red bicycle at dawn") and piece.verdict is not None

    plan = plan_variations(repo, piece.id, "seed", 2)
    produce_content_batch(
        persona="mia-fit", num_pieces=2, tier_mix=plan.tier_mix, seed=plan.seed, batch_id=plan.batch_id,
        include_hooks=False,
    )  # fmt: skip
    rows = repo.variations_of(piece.id)
    assert [r.status is not PieceStatus.planned and r.verdict is not None for r in rows] == [True, True]
    varied = [r.record for r in rows]
    assert [v.seed for v in varied if v] == [record.seed + 1, record.seed + 2]
    assert all(v and (v.steps, v.scheduler, v.prompt) == (3, "DDIMScheduler", record.prompt) for v in varied)
    assert all(v and v.extra["derived_from"] == piece.id for v in varied)  # in the image's provenance too
