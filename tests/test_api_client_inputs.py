"""REST API: what a client sends is never trusted beyond its shape (issue 12, item 11).

* an ``Idempotency-Key`` reused with another body is refused (422), the same key and body still get
  the first run;
* a persona LoRA is ``registry:<name>`` or a hub id; nothing a client names is looked up on the
  server's filesystem, so answers do not depend on whether a path exists.

Launches go to a fake launcher that keeps Prefect's idempotency contract (the first run of a key is
handed back), so no Prefect server is needed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import save_file
from support.api import World, build_world, persona

from contentforge.config import Settings
from contentforge.domain import LoraSpec
from contentforge.domain.models import Platform
from contentforge_api import create_app

TOKEN = "full-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeLauncher:
    """Prefect's contract: a known idempotency key returns the run it first created, unchanged."""

    deployment_name = "produce-content-batch/produce-content-batch"

    def __init__(self) -> None:
        self.by_key: dict[str, SimpleNamespace] = {}
        self.created: list[SimpleNamespace] = []

    async def launch(
        self,
        parameters: Mapping[str, Any],
        *,
        tags: Iterable[str],
        idempotency_key: str | None = None,
        work_queue_name: str | None = None,
    ) -> SimpleNamespace:
        if idempotency_key is not None and idempotency_key in self.by_key:
            return self.by_key[idempotency_key]
        run = SimpleNamespace(
            id=uuid.uuid4(),
            name=f"run-{len(self.created)}",
            parameters=dict(parameters),
            tags=list(tags),
            work_queue_name=work_queue_name,
            state=SimpleNamespace(type=SimpleNamespace(value="SCHEDULED")),
        )
        self.created.append(run)
        if idempotency_key is not None:
            self.by_key[idempotency_key] = run
        return run


@pytest.fixture()
def world(settings_env: Path) -> World:
    settings = Settings(
        _env_file=None,
        data_dir=settings_env,
        api_token=TOKEN,
        image_profile="fixed-latency",
        fixed_latency_s=0.0,
    )
    return build_world(settings)


@pytest.fixture()
def launcher() -> FakeLauncher:
    return FakeLauncher()


@pytest.fixture()
def client(world: World, launcher: FakeLauncher) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings, launcher=launcher)) as test_client:  # type: ignore[arg-type]
        yield test_client


def test_an_idempotency_key_reused_with_another_body_is_refused(
    client: TestClient, launcher: FakeLauncher
) -> None:
    key = {**AUTH, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = client.post("/api/v1/content/batch", headers=key, json={"persona": "ava", "num_pieces": 3})
    again = client.post("/api/v1/content/batch", headers=key, json={"num_pieces": 3, "persona": "ava"})
    assert first.status_code == again.status_code == 202, first.text
    assert again.json()["flow_run_id"] == first.json()["flow_run_id"], "same key, same body: the first run"

    other = client.post("/api/v1/content/batch", headers=key, json={"persona": "ava", "num_pieces": 7})
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert "different request" in other.json()["error"]["message"]
    # The same key on the other endpoint is another request too.
    single = client.post("/api/v1/content/generate", headers=key, json={"persona": "ava"})
    assert single.status_code == 422 and single.json()["error"]["code"] == "idempotency_key_reused"
    assert len(launcher.created) == 1
    # Without a key nothing is fingerprinted: every call is a new run.
    assert client.post("/api/v1/content/generate", headers=AUTH, json={"persona": "ava"}).status_code == 202
    assert len(launcher.created) == 2


def _lora_persona(source: str, persona_id: str) -> dict[str, Any]:
    body = persona(persona_id, f"Lora {persona_id}", [Platform.instagram]).model_dump(mode="json")
    body["lora"] = {"source": source}
    return body


def test_persona_loras_from_clients_are_registry_names_or_hub_ids_only(
    client: TestClient, tmp_path: Path
) -> None:
    real = tmp_path / "real.safetensors"
    save_file({"w": np.zeros((2, 2), dtype="float32")}, str(real))
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a lora")
    paths = [str(real), str(text_file), str(tmp_path), str(tmp_path / "missing.safetensors"),
             "/etc/passwd", "../../etc/passwd", "~/.ssh/id_rsa", "C:\\loras\\x.safetensors"]  # fmt: skip
    messages = set()
    for i, path in enumerate(paths):
        response = client.post("/api/v1/personas", headers=AUTH, json=_lora_persona(path, f"lp{i}"))
        assert response.status_code == 422, (path, response.text)
        messages.add(response.json()["error"]["message"].replace(repr(path), "<path>"))
    assert len(messages) == 1, f"one answer whatever exists on the server: {messages}"
    assert "never a file path" in messages.pop()
    hub = client.post("/api/v1/personas", headers=AUTH, json=_lora_persona("owner/style-lora", "lhub"))
    assert hub.status_code == 201, hub.text


def test_batch_validation_never_looks_a_persona_lora_up_on_disk(
    client: TestClient, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hub-shaped ids are not checked against the server's directories; paths are refused alike."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "name").mkdir(parents=True)  # "owner/name" also exists as a relative folder
    real = tmp_path / "real.safetensors"
    save_file({"w": np.zeros((2, 2), dtype="float32")}, str(real))
    answers = {}
    for persona_id, source in [("hubby", "owner/name"), ("filea", str(real)),
                               ("fileb", str(tmp_path / "missing.safetensors"))]:  # fmt: skip
        stored = persona(persona_id, f"P {persona_id}", [Platform.instagram])
        world.repo.upsert_persona(stored.model_copy(update={"lora": LoraSpec(source=source)}))
        response = client.post("/api/v1/content/generate", headers=AUTH, json={"persona": persona_id})
        answers[persona_id] = (response.status_code, response.json().get("error", {}).get("message", ""))
    assert answers["hubby"][0] == 202, answers
    assert answers["filea"][0] == answers["fileb"][0] == 422, answers
    sources = {"filea": str(real), "fileb": str(tmp_path / "missing.safetensors")}
    normalised = {answers[k][1].replace(repr(source), "<path>") for k, source in sources.items()}
    assert len(normalised) == 1, normalised


def test_a_batch_another_run_holds_is_refused_before_any_launch(
    client: TestClient, world: World, launcher: FakeLauncher
) -> None:
    """One runner per batch (issue 12, item 2): the API says who holds it, and launches nothing."""
    first = client.post("/api/v1/content/batch", headers=AUTH, json={"persona": "ava", "batch_id": "held-b"})
    assert first.status_code == 202, first.text
    world.repo.create_batch(
        batch_id="held-b", persona_id="ava", platform="instagram", num_pieces=3,
        tier_mix={"safe": 1.0, "suggestive": 0.0}, seed=0, params={}, flow_run_id="r1",
    )  # fmt: skip
    world.repo.acquire_batch_lease("held-b", "worker-3:pid 9:flow run r1", ttl_s=60)
    again = client.post("/api/v1/content/batch", headers=AUTH, json={"persona": "ava", "batch_id": "held-b"})
    assert again.status_code == 409, again.text
    assert "already being run by worker-3:pid 9:flow run r1" in again.json()["error"]["message"]
    assert len(launcher.created) == 1
    world.repo.release_batch_lease("held-b", "worker-3:pid 9:flow run r1")
    resumed = client.post(
        "/api/v1/content/batch", headers=AUTH, json={"persona": "ava", "batch_id": "held-b"}
    )
    assert resumed.status_code == 202 and len(launcher.created) == 2
