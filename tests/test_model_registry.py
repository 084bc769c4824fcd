"""The model registry: repository on SQLite and PostgreSQL, pruning, feedback, and ``contentforge models``."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from contentforge.db import make_engine, migrate
from contentforge.db.registry import InstalledModel, ModelRegistry, prune_plan
from contentforge.errors import InvalidInput

T0 = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'r.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from contentforge.images.tiny import build_tiny_lora, build_tiny_sdxl_pipeline

    return build_tiny_lora(
        build_tiny_sdxl_pipeline(0), tmp_path_factory.mktemp("l") / "a.safetensors", seed=1
    )


def model(name: str, size: int, used: datetime | None = None, installed: datetime = T0) -> InstalledModel:
    return InstalledModel(
        name=name,
        kind="lora",
        source="local",
        source_ref=f"/m/{name}",
        path=f"/m/{name}",
        family="sdxl",
        family_reason="test",
        sha256="0" * 64,
        size_bytes=size,
        trigger_words=("tok",),
        tags=("film",),
        description="d",
        installed_at=installed,
        last_used_at=used,
    )


def test_registry_round_trips_refuses_a_taken_name_and_tracks_use(engine: Engine) -> None:
    registry = ModelRegistry(engine)
    registry.add(model("grain", 10))
    assert registry.get("grain") == model("grain", 10)
    with pytest.raises(InvalidInput, match="installed already"):
        registry.add(model("grain", 11))
    registry.touch(["grain"], T0 + timedelta(days=3))
    got = registry.get("grain")
    assert got is not None and got.last_used_at == T0 + timedelta(days=3)
    assert [m.name for m in registry.list_models(kind="lora", family="sdxl")] == ["grain"]
    assert registry.list_models(family="flux") == []
    registry.remove("grain")
    with pytest.raises(InvalidInput, match="no installed model"):
        registry.remove("grain")


def test_feedback_accumulates_per_key_and_scores_move_with_it(engine: Engine) -> None:
    registry = ModelRegistry(engine)
    registry.record_feedback("lora", "grain", approved=True, rating=5)
    registry.record_feedback("lora", "grain", approved=True)
    registry.record_feedback("lora", "neon", approved=False, rating=1)
    scores = registry.feedback("lora")
    assert scores["grain"].approvals == 2 and scores["grain"].rating_count == 1
    assert scores["grain"].value() > 0.5 > scores["neon"].value()
    with pytest.raises(InvalidInput, match="1 to 5"):
        registry.record_feedback("lora", "grain", rating=6)


def test_prune_removes_least_recently_used_first_and_never_a_protected_one() -> None:
    models = [
        model("old", 40, used=T0),
        model("never", 40, used=None, installed=T0 - timedelta(days=9)),
        model("recent", 40, used=T0 + timedelta(days=5)),
        model("persona-lora", 40, used=T0 - timedelta(days=99)),
    ]
    plan = prune_plan(models, budget_bytes=90, keep={"persona-lora"})
    assert [m.name for m in plan] == ["never", "old"]
    assert prune_plan(models, budget_bytes=1000, keep=set()) == []
    everything_but_kept = prune_plan(models, budget_bytes=0, keep={"persona-lora"})
    assert {m.name for m in everything_but_kept} == {"old", "never", "recent"}


def test_cli_install_list_verify_prune_and_remove(
    settings_env: Path, lora_file: Path, tmp_path: Path
) -> None:
    from contentforge.domain import LoraSpec
    from contentforge.personas import sample_persona
    from contentforge_cli import context
    from contentforge_cli.main import app

    runner = CliRunner()
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    shutil.copy(lora_file, first)
    shutil.copy(lora_file, second)
    details = ["--trigger", "grainy 35mm", "--description", "film grain", "--tag", "film"]
    local = ["--hub", "local", "--kind", "lora"]
    done = runner.invoke(app, ["models", "install", str(first), *local, "--name", "grain", *details])
    assert done.exit_code == 0, done.output
    assert "family sdxl (tensor names of the LoRA)" in done.output
    args = ["models", "install", str(second), "--hub", "local", "--kind", "lora", "--name", "neon"]
    assert runner.invoke(app, args).exit_code == 0
    listed = runner.invoke(app, ["models", "list"])
    assert "grain" in listed.output and "neon" in listed.output and "2 model(s)" in listed.output

    assert runner.invoke(app, ["models", "verify"]).exit_code == 0
    second.write_bytes(second.read_bytes() + b" ")
    changed = runner.invoke(app, ["models", "verify"])
    assert changed.exit_code == 1 and "neon: SHA-256" in changed.output

    persona = sample_persona().model_copy(update={"lora": LoraSpec(source="registry:grain")})
    context.repository().upsert_persona(persona)
    pruned = runner.invoke(app, ["models", "prune", "--budget-mb", "0"])
    assert pruned.exit_code == 0, pruned.output
    assert "removed neon" in pruned.output and "grain" not in pruned.output.split("pruned")[0]
    assert second.exists()  # a local model's own file is never deleted, only unregistered
    refused = runner.invoke(app, ["models", "remove", "grain"])
    assert refused.exit_code == 2 and "used by persona" in refused.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["install", "abc", "--hub", "civitai"], "give the model version id"),
        (["install", "../etc", "--hub", "huggingface"], "repo id like owner/name"),
        (["install", "1", "--hub", "dropbox"], "use civitai or huggingface"),
        (["install", "12", "--name", "Bad Name!"], "model name 'Bad Name!'"),
        (["search", "x", "--hub", "dropbox"], "use civitai or huggingface"),
        (["install", "/nope.ckpt", "--hub", "local", "--kind", "lora", "--name", "x"], "no such file"),
    ],
)
def test_bad_model_commands_fail_in_one_line_before_any_hub_is_contacted(
    settings_env: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contentforge_cli.main import app

    monkeypatch.setenv("CONTENTFORGE_CIVITAI_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    result = CliRunner().invoke(app, ["models", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


# --- the API and the install flow ----------------------------------------------------------------

FULL = "full-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"


class RecordingLauncher:
    """Stands in for the Prefect launcher: records the deployment runs the API asks for.

    Like Prefect, a run created with an idempotency key already used hands back that key's first run.
    """

    deployment_name = "produce-content-batch/produce-content-batch"

    def __init__(self) -> None:
        self.launched: list[tuple[str, dict[str, object]]] = []
        self.by_key: dict[str, object] = {}

    async def launch_deployment(
        self, deployment: str, parameters: dict[str, object], idempotency_key: str | None = None, **_: object
    ) -> object:
        from types import SimpleNamespace

        if idempotency_key is not None and idempotency_key in self.by_key:
            return self.by_key[idempotency_key]
        self.launched.append((deployment, dict(parameters)))
        run = SimpleNamespace(id=uuid.uuid4(), name="brave-otter", parameters=parameters)
        if idempotency_key is not None:
            self.by_key[idempotency_key] = run
        return run


def test_models_api_lists_reads_starts_installs_as_flow_runs_and_guards_removal(settings_env: Path) -> None:
    from fastapi.testclient import TestClient

    from contentforge.config import Settings
    from contentforge.domain import LoraSpec
    from contentforge.personas import sample_persona
    from contentforge_api import create_app

    settings = Settings(_env_file=None, data_dir=settings_env, api_token=FULL, api_read_token=READ)  # type: ignore[call-arg]
    launcher = RecordingLauncher()
    app = create_app(settings, launcher=launcher)  # type: ignore[arg-type]
    auth, read = {"Authorization": f"Bearer {FULL}"}, {"Authorization": f"Bearer {READ}"}
    with TestClient(app) as client:
        assert client.get("/api/v1/models", headers=read).json() == []
        registry = ModelRegistry(app.state.contentforge.services.sessions)
        registry.add(model("grain", 10))
        listed = client.get("/api/v1/models?kind=lora", headers=read).json()
        assert [m["name"] for m in listed] == ["grain"] and listed[0]["family"] == "sdxl"
        assert client.get("/api/v1/models/nope", headers=read).status_code == 404

        bad = client.post("/api/v1/models/install", headers=auth, json={"hub": "civitai", "ref": "abc"})
        assert bad.status_code == 422 and "version id" in bad.json()["error"]["message"]
        assert (
            client.post(
                "/api/v1/models/install", headers=read, json={"hub": "civitai", "ref": "1"}
            ).status_code
            == 403
        )
        assert launcher.launched == []
        started = client.post(
            "/api/v1/models/install",
            headers=auth,
            json={"hub": "huggingface", "ref": "org/lora", "kind": "lora"},
        )
        assert started.status_code == 202, started.text
        assert launcher.launched == [
            ("install-model/install-model", {"hub": "huggingface", "ref": "org/lora", "kind": "lora"})
        ]

        app.state.contentforge.repo.upsert_persona(
            sample_persona().model_copy(update={"lora": LoraSpec(source="registry:grain")})
        )
        assert client.delete("/api/v1/models/grain", headers=auth).status_code == 409
        schema = client.get("/api/v1/openapi.json").json()
        assert {"202", "503"} <= set(schema["paths"]["/api/v1/models/install"]["post"]["responses"])


def test_a_retried_install_request_with_its_idempotency_key_starts_one_install(settings_env: Path) -> None:
    from fastapi.testclient import TestClient

    from contentforge.config import Settings
    from contentforge_api import create_app

    settings = Settings(_env_file=None, data_dir=settings_env, api_token=FULL, api_read_token=READ)  # type: ignore[call-arg]
    launcher = RecordingLauncher()
    app = create_app(settings, launcher=launcher)  # type: ignore[arg-type]
    auth = {"Authorization": f"Bearer {FULL}", "Idempotency-Key": "install-grain-1"}
    body = {"hub": "civitai", "ref": "128713", "name": "grain"}
    with TestClient(app) as client:
        first = client.post("/api/v1/models/install", headers=auth, json=body)
        retried = client.post("/api/v1/models/install", headers=auth, json=body)
        assert first.status_code == retried.status_code == 202, retried.text
        assert retried.json()["flow_run_id"] == first.json()["flow_run_id"]
        assert len(launcher.launched) == 1
        other = client.post("/api/v1/models/install", headers=auth, json={**body, "name": "other"})
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
        assert len(launcher.launched) == 1


@pytest.mark.slow
def test_the_install_flow_installs_a_civitai_lora_on_a_real_prefect_server(
    settings_env: Path, prefect_server: str, lora_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from support.model_hubs import FakeHubs, HubWorld

    from contentforge.config import get_settings
    from flows.install_model import install_model

    world = HubWorld()
    world.add_civitai(
        7, "Grain", type_="LORA", version_id=70, base_model="SDXL 1.0", file_name="grain.safetensors",
        data=lora_file.read_bytes(), trained_words=["grainy"],
    )  # fmt: skip
    with FakeHubs(world) as hubs:
        monkeypatch.setenv("CONTENTFORGE_CIVITAI_BASE_URL", hubs.url)
        get_settings.cache_clear()
        result = install_model("civitai", "70", "grain")
    assert result["name"] == "grain" and result["family"] == "sdxl"
    from contentforge_cli import context

    installed = ModelRegistry(context.services().sessions).get("grain")
    assert installed is not None and installed.trigger_words == ("grainy",)
