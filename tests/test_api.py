"""REST API: every endpoint through FastAPI's TestClient on a temp SQLite database; batch launches
against the session's real Prefect server (a deployment is created there; no worker is needed)."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select
from support.api import MARKUP_HOOK, World, add_variations, build_world

from contentforge.config import Settings
from contentforge.db.models import ReviewDecisionORM
from contentforge.domain.models import PieceStatus
from contentforge_api import ApiConfigError, create_app
from contentforge_api.launcher import BatchLauncher

FULL = "full-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {FULL}"}
READ_AUTH = {"Authorization": f"Bearer {READ}"}
BATCH_DEPLOYMENT = "produce-content-batch/produce-content-batch"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "api_token": FULL,
        "api_read_token": READ,
        "image_profile": "fixed-latency",  # validation builds the backend object; no torch import needed
        "fixed_latency_s": 0.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture()
def world(settings_env: Path) -> World:
    return build_world(make_settings(settings_env))


@pytest.fixture()
def client(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings)) as test_client:
        yield test_client


def png_b64(size: tuple[int, int] = (32, 32), fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 180, 160)).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


# --- start-up, OpenAPI, auth -------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/api/v1/templates"),
    ("GET", "/api/v1/templates/FIT-001"),
    ("GET", "/api/v1/personas"),
    ("POST", "/api/v1/personas"),
    ("GET", "/api/v1/personas/ava"),
    ("GET", "/api/v1/personas/ava/content"),
    ("GET", "/api/v1/personas/ava/stats"),
    ("POST", "/api/v1/content/generate"),
    ("POST", "/api/v1/content/batch"),
    ("POST", "/api/v1/content/hooks"),
    ("POST", "/api/v1/content/safety-check"),
    ("POST", "/api/v1/content/hooks/variations"),
    ("POST", "/api/v1/content/cta"),
    ("GET", f"/api/v1/runs/{uuid.uuid4()}"),
    ("GET", "/api/v1/batches/b1/urls"),
    ("GET", "/api/v1/batches/b1"),
    ("GET", "/api/v1/batches/b1/pieces"),
    ("GET", "/api/v1/batches/b1/gallery"),
    ("GET", "/api/v1/pieces/b1-000"),
    ("POST", "/api/v1/pieces/b1-002/review"),
    ("GET", "/content/ava/b1-000.png"),
]


def test_openapi_schema_lists_every_endpoint_with_bearer_auth(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    expected = {
        "/api/v1/templates": {"get"},
        "/api/v1/templates/{template_id}": {"get"},
        "/api/v1/personas": {"get", "post"},
        "/api/v1/personas/{persona_id}": {"get"},
        "/api/v1/personas/{persona_id}/content": {"get"},
        "/api/v1/personas/{persona_id}/stats": {"get"},
        "/api/v1/content/generate": {"post"},
        "/api/v1/content/batch": {"post"},
        "/api/v1/content/hooks": {"post"},
        "/api/v1/content/safety-check": {"post"},
        "/api/v1/content/hooks/variations": {"post"},
        "/api/v1/content/cta": {"post"},
        "/api/v1/runs/{flow_run_id}": {"get"},
        "/api/v1/batches/{batch_id}/urls": {"get"},
        "/api/v1/batches/{batch_id}": {"get"},
        "/api/v1/batches/{batch_id}/pieces": {"get"},
        "/api/v1/batches/{batch_id}/gallery": {"get"},
        "/api/v1/pieces/{piece_id}": {"get"},
        "/api/v1/pieces/{piece_id}/review": {"post"},
    }
    for path, methods in expected.items():
        assert set(schema["paths"][path]) == methods, path
        for method in methods:
            assert schema["paths"][path][method]["security"], (path, method)
    schemes = schema["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    assert client.get("/api/v1/health").json() == {"status": "ok"}


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_endpoint_needs_a_valid_token(client: TestClient, method: str, path: str) -> None:
    missing = client.request(method, path)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token" in error(missing)["message"]
    wrong = client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert error(wrong)["code"] == "unauthorized"
    assert client.request(method, path, headers={"Authorization": f"Basic {FULL}"}).status_code == 401


def test_read_only_token_reads_but_cannot_write(client: TestClient) -> None:
    assert client.get("/api/v1/personas", headers=READ_AUTH).status_code == 200
    for path, body in [
        # Model and moderation calls may be paid: the read-only token may not start them either
        # (tests/test_api_tokens_costs.py checks that no provider is reached).
        ("/api/v1/content/hooks", {"persona": "ava", "template_id": "FIT-001"}),
        ("/api/v1/content/safety-check", {"text": "hello"}),
        ("/api/v1/personas", {"name": "X"}),
        ("/api/v1/content/batch", {"persona": "ava"}),
        ("/api/v1/content/generate", {"persona": "ava"}),
        ("/api/v1/pieces/b1-002/review", {"decision": "approve"}),
    ]:
        refused = client.post(path, headers=READ_AUTH, json=body)
        assert refused.status_code == 403, path
        assert "read-only" in error(refused)["message"]


def test_the_api_refuses_to_start_without_a_token(settings_env: Path) -> None:
    with pytest.raises(ApiConfigError, match="CONTENTFORGE_API_TOKEN"):
        create_app(make_settings(settings_env, api_token=None))


def test_insecure_local_mode_answers_loopback_only(settings_env: Path) -> None:
    app = create_app(make_settings(settings_env, api_token=None), insecure_local=True)
    local = TestClient(app, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 50000))
    assert local.get("/api/v1/personas").status_code == 200
    # A web page that rebinds its own domain to 127.0.0.1 still sends its own Host header.
    rebound = local.get("/api/v1/personas", headers={"Host": "evil.example:8000"})
    assert rebound.status_code == 403
    remote = TestClient(app, base_url="http://127.0.0.1:8000", client=("192.168.1.20", 50000))
    assert remote.get("/api/v1/personas").status_code == 403
    assert "loopback" in error(remote.get("/api/v1/personas"))["message"]


# --- templates and personas --------------------------------------------------------------------------


def test_templates_filters_and_lookup(client: TestClient) -> None:
    everything = client.get("/api/v1/templates", headers=AUTH).json()
    assert everything["total"] == len(everything["items"]) == 50
    fitness_safe = client.get("/api/v1/templates?category=fitness&tier=safe", headers=AUTH).json()
    assert fitness_safe["total"] > 0
    assert all(t["category"] == "fitness" and t["tier"] == "safe" for t in fitness_safe["items"])
    for_ava = client.get("/api/v1/templates?persona=ava", headers=AUTH).json()["items"]
    assert for_ava and all("fitness" in t["niches"] for t in for_ava)
    assert len(for_ava) < everything["total"]
    assert client.get("/api/v1/templates?persona=nobody", headers=AUTH).status_code == 404
    bad_tier = client.get("/api/v1/templates?tier=explicit", headers=AUTH)
    assert bad_tier.status_code == 422
    assert error(bad_tier)["message"].startswith("query.tier:")

    one = client.get("/api/v1/templates/FIT-006", headers=AUTH)
    assert one.status_code == 200 and one.json()["tier"] == "suggestive"
    assert client.get("/api/v1/templates/ZZZ-999", headers=AUTH).status_code == 404
    assert client.get("/api/v1/templates/not-an-id", headers=AUTH).status_code == 422


def test_personas_list_create_and_validation(client: TestClient) -> None:
    listed = client.get("/api/v1/personas", headers=AUTH).json()
    assert listed["total"] == 2 and {p["id"] for p in listed["items"]} == {"ava", "leo"}
    new = {
        "id": "zoe",
        "name": "Zoe Lane",
        "niche": "Travel",
        "appearance": "curly red hair, freckles",
        "personality_traits": ["curious"],
        "interests": ["trains"],
        "tone": "playful",
        "timezone": "Europe/Berlin",
        "platforms": ["instagram"],
    }
    created = client.post("/api/v1/personas", headers=AUTH, json=new)
    assert created.status_code == 201 and created.json()["niche"] == "travel"
    assert client.get("/api/v1/personas/zoe", headers=AUTH).json()["name"] == "Zoe Lane"
    assert client.post("/api/v1/personas", headers=AUTH, json=new).status_code == 409
    same_name = client.post("/api/v1/personas", headers=AUTH, json={**new, "id": "zoe2"})
    assert same_name.status_code == 409 and "already used" in error(same_name)["message"]

    bad = client.post(
        "/api/v1/personas", headers=AUTH, json={**new, "id": "Bad Id", "timezone": "Mars/Olympus", "x": 1}
    )
    assert bad.status_code == 422
    message = error(bad)["message"]
    assert "body.id" in message and "body.timezone" in message and "Mars/Olympus" in message
    assert "body.x: Extra inputs are not permitted" in message
    assert client.get("/api/v1/personas/nobody", headers=AUTH).status_code == 404


# --- content listing and stats -----------------------------------------------------------------------


def test_persona_content_filters_and_pagination(client: TestClient) -> None:
    url = "/api/v1/personas/ava/content"
    everything = client.get(url, headers=AUTH).json()
    assert everything["total"] == 8 and len(everything["items"]) == 8
    # Newest batch (b2) first, plan order inside a batch.
    assert [p["id"] for p in everything["items"]][:3] == ["b2-000", "b2-001", "b1-000"]

    page1 = client.get(f"{url}?limit=3&offset=0", headers=AUTH).json()
    page3 = client.get(f"{url}?limit=3&offset=6", headers=AUTH).json()
    assert page1["total"] == page3["total"] == 8
    assert [p["id"] for p in page1["items"]] == ["b2-000", "b2-001", "b1-000"]
    assert [p["id"] for p in page3["items"]] == ["b1-004", "b1-005"]

    tiktok = client.get(f"{url}?platform=tiktok", headers=AUTH).json()
    assert tiktok["total"] == 2 and {p["platform"] for p in tiktok["items"]} == {"tiktok"}
    review = client.get(f"{url}?status=needs_review", headers=AUTH).json()
    assert [p["id"] for p in review["items"]] == ["b1-002", "b1-003"]
    suggestive_ig = client.get(f"{url}?tier=suggestive&platform=instagram", headers=AUTH).json()
    assert [p["id"] for p in suggestive_ig["items"]] == ["b1-001", "b1-003"]

    first = everything["items"][2]
    assert first["image_url"] == "/content/ava/b1-000.png"
    assert first["hooks"][0]["text"] == MARKUP_HOOK
    assert first["cost_usd"] == pytest.approx(0.002)
    assert first["cost_usd_total"] == pytest.approx(0.003)  # image + text charged to the piece
    assert everything["items"][-1]["image_url"] is None  # planned, no image yet

    for query, where in [
        ("status=done", "query.status"),
        ("limit=0", "query.limit"),
        ("limit=201", "query.limit"),
        ("offset=-1", "query.offset"),
        ("platform=myspace", "query.platform"),
    ]:
        bad = client.get(f"{url}?{query}", headers=AUTH)
        assert bad.status_code == 422 and error(bad)["message"].startswith(where), query
    assert client.get("/api/v1/personas/nobody/content", headers=AUTH).status_code == 404


def test_persona_stats(client: TestClient) -> None:
    stats = client.get("/api/v1/personas/ava/stats", headers=AUTH).json()
    assert stats["batches"] == 2 and stats["pieces"] == 8 and stats["generated"] == 7
    assert stats["by_status"]["ready"] == 4 and stats["pending_review"] == 2
    assert stats["by_status"]["rejected"] == 1 and stats["by_status"]["planned"] == 1
    assert stats["by_platform"] == {"instagram": 6, "tiktok": 2}
    assert stats["cost_usd_by_kind"]["image"] == pytest.approx(7 * 0.002)
    assert stats["cost_usd_total"] == pytest.approx(7 * 0.002 + 0.001)
    assert stats["latest_batch_id"] == "b2"
    assert stats["strategy_cost_usd_by_step"] == {}


def test_persona_stats_include_the_personas_strategy_costs(world: World, client: TestClient) -> None:
    repo = world.repo
    repo.add_strategy_cost("plan_topics", provider="anthropic", amount_usd=0.03, persona_id="ava")
    repo.add_strategy_cost("write_blog_post", provider="anthropic", amount_usd=0.2, persona_id="ava")
    repo.add_strategy_cost("plan_topics", provider="openai", amount_usd=5.0, persona_id="leo")  # not ava's
    stats = client.get("/api/v1/personas/ava/stats", headers=AUTH).json()
    assert stats["strategy_cost_usd_by_step"] == {
        "plan_topics": pytest.approx(0.03),
        "write_blog_post": pytest.approx(0.2),
    }
    assert stats["cost_usd_total"] == pytest.approx(7 * 0.002 + 0.001 + 0.23)
    empty = client.get("/api/v1/personas/leo/stats", headers=AUTH).json()
    assert (
        empty["pieces"] == 0 and empty["latest_batch_id"] is None and empty["generation_seconds_mean"] is None
    )
    assert client.get("/api/v1/personas/nobody/stats", headers=AUTH).status_code == 404


def test_batch_and_piece_reads(client: TestClient) -> None:
    batch = client.get("/api/v1/batches/b1", headers=AUTH).json()
    assert batch["persona_id"] == "ava" and batch["stats"]["by_status"]["needs_review"] == 2
    pieces = client.get("/api/v1/batches/b1/pieces", headers=AUTH).json()
    assert [p["index"] for p in pieces] == list(range(6))
    assert pieces[4]["status"] == "rejected" and pieces[4]["moderation_reasons"] == ["sexual 0.95 >= 0.90"]
    assert client.get("/api/v1/pieces/b1-003", headers=AUTH).json()["tier"] == "suggestive"
    assert client.get("/api/v1/batches/nope", headers=AUTH).status_code == 404
    assert client.get("/api/v1/batches/nope/pieces", headers=AUTH).status_code == 404
    assert client.get("/api/v1/pieces/nope", headers=AUTH).status_code == 404
    # What the review gallery loads: the same batch and pieces in one answer.
    gallery = client.get("/api/v1/batches/b1/gallery", headers=AUTH)
    assert gallery.status_code == 200 and gallery.json() == {"batch": batch, "pieces": pieces}
    missing = client.get("/api/v1/batches/nope/gallery", headers=AUTH)
    assert missing.status_code == 404 and "no batch with id 'nope'" in error(missing)["message"]


def test_piece_listings_name_the_piece_each_variation_varies(world: World, client: TestClient) -> None:
    """A variation batch's pieces say which piece they vary, read with the rows (no statement per piece)."""
    from sqlalchemy import event

    from contentforge_api.queries import ContentQueries

    plan = add_variations(world, 2)
    varied = client.get(f"/api/v1/batches/{plan.batch_id}/pieces", headers=AUTH).json()
    assert [(p["id"], p["parent_piece_id"]) for p in varied] == [(i, "v0-000") for i in plan.piece_ids]
    parent = client.get("/api/v1/batches/v0/pieces", headers=AUTH).json()
    assert [(p["id"], p["parent_piece_id"]) for p in parent] == [("v0-000", None)]
    content = client.get("/api/v1/personas/ava/content?limit=100", headers=AUTH).json()["items"]
    listed = {p["id"]: p["parent_piece_id"] for p in content}
    assert listed[plan.piece_ids[1]] == "v0-000" and listed["v0-000"] is None and listed["b1-000"] is None
    shown = client.get(f"/api/v1/pieces/{plan.piece_ids[1]}", headers=AUTH).json()
    assert shown["parent_piece_id"] == "v0-000" and shown["variation_ids"] == []
    assert client.get("/api/v1/pieces/v0-000", headers=AUTH).json()["variation_ids"] == plan.piece_ids

    documented = client.get("/api/v1/openapi.json").json()["components"]["schemas"]["PieceOut"]
    assert "parent_piece_id" in documented["required"]  # always there; null when not a variation
    assert "variation of" in documented["properties"]["parent_piece_id"]["description"]

    selects: list[str] = []

    def remember(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(world.repo.engine, "before_cursor_execute", remember)
    try:
        rows = ContentQueries(world.repo.engine, lambda piece: None).batch_pieces(plan.batch_id)
    finally:
        event.remove(world.repo.engine, "before_cursor_execute", remember)
    assert rows is not None and [r["parent_piece_id"] for r in rows] == ["v0-000", "v0-000"]
    # The batch's params (its mode's decisions), the rows, their hooks: the parent is a column of the row.
    assert len(selects) == 3, selects


# --- hooks and safety --------------------------------------------------------------------------------


def test_hooks_from_the_offline_writer_follow_platform_rules(client: TestClient) -> None:
    response = client.post(
        "/api/v1/content/hooks",
        headers=AUTH,
        json={"persona": "Ava Stone", "template_id": "FIT-002", "platform": "x", "count": 4, "seed": 3},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["writer"] == "offline-templates" and body["persona_id"] == "ava"
    assert len(body["hooks"]) == 4 and len({h["style"] for h in body["hooks"]}) == 4
    assert all(len(h["caption"]) <= 280 and h["platform"] == "x" for h in body["hooks"])
    again = client.post(
        "/api/v1/content/hooks",
        headers=AUTH,
        json={"persona": "ava", "template_id": "FIT-002", "platform": "x", "count": 4, "seed": 3},
    )
    assert again.json()["hooks"] == body["hooks"]  # deterministic for the seed

    unknown = client.post(
        "/api/v1/content/hooks", headers=AUTH, json={"persona": "ava", "template_id": "ZZZ-999"}
    )
    assert unknown.status_code == 422 and "unknown template" in error(unknown)["message"]
    nobody = client.post(
        "/api/v1/content/hooks", headers=AUTH, json={"persona": "nobody", "template_id": "FIT-001"}
    )
    assert nobody.status_code == 422 and error(nobody)["code"] == "unknown_persona"
    too_many = client.post(
        "/api/v1/content/hooks", headers=AUTH, json={"persona": "ava", "template_id": "FIT-001", "count": 11}
    )
    assert too_many.status_code == 422 and "body.count" in error(too_many)["message"]


@pytest.mark.slow
def test_safety_check_text_and_image(client: TestClient) -> None:
    url = "/api/v1/content/safety-check"
    safe = client.post(url, headers=AUTH, json={"text": "Leg day done, hydrate and stretch!"})
    assert safe.status_code == 200
    assert safe.json()["verdict"] == "safe" and "instagram" in safe.json()["accepted_platforms"]
    threat = client.post(url, headers=AUTH, json={"texts": ["nice run", "I hope you die"]}).json()
    assert threat["verdict"] == "rejected" and threat["scores"]["violence"] >= 0.7
    assert threat["accepted_platforms"] == []

    with_image = client.post(url, headers=AUTH, json={"image_base64": png_b64(), "text": "morning stretch"})
    assert with_image.status_code == 200, with_image.text
    assert "nudenet" in with_image.json()["backends"]
    as_data_url = client.post(url, headers=AUTH, json={"image_base64": "data:image/png;base64," + png_b64()})
    assert as_data_url.status_code == 200

    for body, status, words in [
        ({}, 422, "send text, texts, image_base64 and/or image_url"),
        ({"image_base64": "not base64!!"}, 422, "body.image_base64"),
        ({"image_base64": base64.b64encode(b"plain text, not an image").decode()}, 422, "not a readable"),
        ({"image_base64": png_b64(fmt="GIF")}, 415, "PNG, JPEG or WebP"),
        ({"texts": ["x" * 10_001]}, 422, "at most 10000 characters"),
    ]:
        refused = client.post(url, headers=AUTH, json=body)
        assert refused.status_code == status, (body.keys(), refused.text)
        assert words in error(refused)["message"]


def test_safety_check_rejects_oversized_payloads(settings_env: Path) -> None:
    world = build_world(make_settings(settings_env, api_max_image_bytes=2048, api_max_body_bytes=64 * 1024))
    client = TestClient(create_app(world.settings))
    url = "/api/v1/content/safety-check"
    big_image = Image.effect_noise((64, 64), 100).convert("RGB")
    buffer = io.BytesIO()
    big_image.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 2048
    too_big = client.post(
        url, headers=AUTH, json={"image_base64": base64.b64encode(buffer.getvalue()).decode()}
    )
    assert too_big.status_code == 413 and "larger than 2048 bytes" in error(too_big)["message"]
    huge_body = client.post(url, headers=AUTH, json={"texts": ["y" * 9000] * 10})
    assert huge_body.status_code == 413 and error(huge_body)["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts streamed bytes
        yield b'{"texts": ["'
        for _ in range(20):
            yield b"z" * 8000
        yield b'"]}'

    streamed = client.post(url, headers={**AUTH, "Content-Type": "application/json"}, content=chunks())
    assert streamed.status_code == 413


# --- batches on the Prefect server -------------------------------------------------------------------


async def _ensure_deployment(name: str = BATCH_DEPLOYMENT) -> uuid.UUID:
    from prefect.client.orchestration import get_client

    flow_name, deployment_name = name.split("/")
    async with get_client() as prefect:
        flow_id = await prefect.create_flow_from_name(flow_name)
        return await prefect.create_deployment(
            flow_id=flow_id,
            name=deployment_name,
            entrypoint="flows/produce_content_batch.py:produce_content_batch",
            enforce_parameter_schema=False,
        )


def _read_run(flow_run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        return prefect.read_flow_run(uuid.UUID(flow_run_id))


def _runs_of(deployment_id: uuid.UUID) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as prefect:
        runs = prefect.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.ID_DESC,
            limit=200,
        )
    return len(runs)


@pytest.mark.slow
def test_batch_launch_creates_a_flow_run_and_runs_reports_it(client: TestClient, prefect_server: str) -> None:
    deployment_id = asyncio.run(_ensure_deployment())
    before = _runs_of(deployment_id)
    response = client.post(
        "/api/v1/content/batch",
        headers=AUTH,
        json={"persona": "ava", "num_pieces": 12, "platform": "tiktok", "tier_mix": "safe=0.5,suggestive=0.5",
              "seed": 42},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    launched = response.json()
    batch_id = launched["batch_id"]
    assert launched["deployment"] == BATCH_DEPLOYMENT and launched["piece_id"] is None
    assert launched["gallery_url"].endswith(f"/gallery/batches/{batch_id}")

    run = _read_run(launched["flow_run_id"])  # what the server really holds
    assert run.deployment_id == deployment_id
    assert run.parameters == {
        "persona": "ava", "num_pieces": 12, "platform": "tiktok",
        "tier_mix": {"safe": 0.5, "suggestive": 0.5}, "include_hooks": True, "safety_check": True,
        "seed": 42, "batch_id": batch_id, "priority": "normal",
    }  # fmt: skip
    assert {"persona:ava", f"batch:{batch_id}", "api", "batch"} <= set(run.tags)
    assert run.state.type.value == "SCHEDULED"  # nothing generated in the request; no worker here
    assert _runs_of(deployment_id) == before + 1

    status_response = client.get(f"/api/v1/runs/{launched['flow_run_id']}", headers=READ_AUTH)
    assert status_response.status_code == 200, status_response.text
    status = status_response.json()
    assert status["state_type"] == "SCHEDULED" and status["state_name"] == "Scheduled"
    assert status["batch_id"] == batch_id and status["progress_percent"] is None
    assert status["pieces_by_status"] is None  # the flow has not created the batch yet
    assert "persona:ava" in status["tags"] and status["parameters"]["num_pieces"] == 12

    # The flow's progress artifact and its database rows show up in the same view.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as prefect:
        prefect.create_artifact(
            ArtifactCreate(type="progress", data=42.5, flow_run_id=uuid.UUID(launched["flow_run_id"]))
        )
    world_repo = client.app.state.contentforge.repo
    world_repo.create_batch(
        batch_id=batch_id, persona_id="ava", platform="tiktok", num_pieces=12, tier_mix={"safe": 0.5,
        "suggestive": 0.5}, seed=42, params={}, flow_run_id=launched["flow_run_id"],
    )  # fmt: skip
    status = client.get(f"/api/v1/runs/{launched['flow_run_id']}", headers=AUTH).json()
    assert status["progress_percent"] == pytest.approx(42.5)
    assert status["pieces_by_status"]["planned"] == 0 and set(status["pieces_by_status"]) >= {"ready"}

    # Bad input never reaches Prefect.
    for body, words in [
        ({"persona": "ava", "tier_mix": "safe=0.9"}, "tier mix must sum to 1"),
        ({"persona": "leo", "platform": "instagram"}, "does not target instagram"),
        ({"persona": "nobody"}, "unknown persona"),
        ({"persona": "persona.yaml"}, "unknown persona"),  # never read as a file
        ({"persona": "ava", "batch_id": "b2", "platform": "tiktok"}, None),  # b2 is ava's: allowed
    ]:
        refused = client.post("/api/v1/content/batch", headers=AUTH, json=body)
        if words is None:
            assert refused.status_code == 202
            continue
        assert refused.status_code == 422, refused.text
        assert words in error(refused)["message"]
    assert _runs_of(deployment_id) == before + 2
    foreign = client.post("/api/v1/content/batch", headers=AUTH, json={"persona": "leo", "platform": "x",
                                                                         "batch_id": "b1"})  # fmt: skip
    assert foreign.status_code == 409

    # One piece: a one-piece run of the same deployment, tier chosen by the request.
    single = client.post(
        "/api/v1/content/generate", headers=AUTH, json={"persona": "ava", "tier": "suggestive", "seed": 5}
    )
    assert single.status_code == 202, single.text
    one = single.json()
    assert one["piece_id"] == f"{one['batch_id']}-000"
    single_run = _read_run(one["flow_run_id"])
    assert single_run.parameters["num_pieces"] == 1
    assert single_run.parameters["tier_mix"] == {"safe": 0.0, "suggestive": 1.0}
    assert "single" in single_run.tags


@pytest.mark.slow
def test_idempotency_key_returns_the_same_run(client: TestClient, prefect_server: str) -> None:
    asyncio.run(_ensure_deployment())
    key = {"Idempotency-Key": f"test-{uuid.uuid4()}"}
    first = client.post(
        "/api/v1/content/batch", headers={**AUTH, **key}, json={"persona": "ava", "num_pieces": 3}
    )
    second = client.post(
        "/api/v1/content/batch", headers={**AUTH, **key}, json={"persona": "ava", "num_pieces": 3}
    )
    assert first.status_code == second.status_code == 202
    assert first.json()["flow_run_id"] == second.json()["flow_run_id"]
    assert first.json()["batch_id"] == second.json()["batch_id"]


@pytest.mark.slow
def test_missing_deployment_or_server_is_a_clear_503(world: World, prefect_server: str) -> None:
    missing = TestClient(
        create_app(world.settings.model_copy(update={"batch_deployment_name": "nope/missing"}))
    )
    response = missing.post("/api/v1/content/batch", headers=AUTH, json={"persona": "ava"})
    assert response.status_code == 503
    assert error(response)["code"] == "deployment_missing"
    assert "'nope/missing' does not exist" in error(response)["message"]
    assert missing.post("/api/v1/content/generate", headers=AUTH, json={"persona": "ava"}).status_code == 503

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    down = TestClient(
        create_app(world.settings, launcher=BatchLauncher(api_url=f"http://127.0.0.1:{closed_port}/api"))
    )
    unreachable = down.post("/api/v1/content/batch", headers=AUTH, json={"persona": "ava"})
    assert unreachable.status_code == 503 and error(unreachable)["code"] == "prefect_unavailable"
    assert down.get(f"/api/v1/runs/{uuid.uuid4()}", headers=AUTH).status_code == 503


@pytest.mark.slow
def test_runs_unknown_and_malformed_ids(client: TestClient, prefect_server: str) -> None:
    unknown = client.get(f"/api/v1/runs/{uuid.uuid4()}", headers=AUTH)
    assert unknown.status_code == 404 and "no flow run" in error(unknown)["message"]
    malformed = client.get("/api/v1/runs/not-a-uuid", headers=AUTH)
    assert malformed.status_code == 422 and error(malformed)["message"].startswith("path.flow_run_id")


# --- review decisions, content files, gallery page ---------------------------------------------------


def test_review_decisions(client: TestClient, world: World) -> None:
    url = "/api/v1/pieces/{}/review"
    approved = client.post(
        url.format("b1-002"),
        headers={**AUTH, "X-ContentForge-Reviewer": "Alice"},
        json={"decision": "approve"},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "ready" and approved.json()["reviewer"] == "Alice (api token)"
    assert world.repo.get_piece("b1-002").status is PieceStatus.ready
    twice = client.post(url.format("b1-002"), headers=AUTH, json={"decision": "reject", "reason": "late"})
    assert twice.status_code == 409 and error(twice)["code"] == "not_in_review"

    no_reason = client.post(url.format("b1-003"), headers=AUTH, json={"decision": "reject", "reason": "  "})
    assert no_reason.status_code == 422 and "needs a reason" in error(no_reason)["message"]
    bad_decision = client.post(url.format("b1-003"), headers=AUTH, json={"decision": "maybe"})
    assert bad_decision.status_code == 422 and "body.decision" in error(bad_decision)["message"]
    bad_name = client.post(
        url.format("b1-003"),
        headers={**AUTH, "X-ContentForge-Reviewer": "<script>"},
        json={"decision": "approve"},
    )
    assert bad_name.status_code == 422
    rejected = client.post(
        url.format("b1-003"), headers=AUTH, json={"decision": "reject", "reason": "off-brand"}
    )
    assert rejected.json()["status"] == "rejected" and rejected.json()["reviewer"] == "api"
    assert client.post(url.format("zzz-000"), headers=AUTH, json={"decision": "approve"}).status_code == 404

    with world.repo.engine.connect() as connection:
        rows = connection.execute(
            select(ReviewDecisionORM.piece_id, ReviewDecisionORM.decision, ReviewDecisionORM.reviewer,
                   ReviewDecisionORM.reason).order_by(ReviewDecisionORM.id)
        ).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [
        ("b1-002", "approve", "Alice (api token)", ""),
        ("b1-003", "reject", "api", "off-brand"),
    ]


def test_content_files_are_served_safely(client: TestClient, world: World) -> None:
    image = client.get("/content/ava/b1-000.png", headers=AUTH)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == (world.settings.data_dir / "content/ava/b1-000.png").read_bytes()
    assert image.headers["x-content-type-options"] == "nosniff"
    (world.settings.data_dir / "content/ava/notes.txt").write_text("private")
    secret = world.settings.data_dir / "secret.png"
    secret.write_bytes(b"\x89PNG not for you")
    (world.settings.data_dir / "content/ava/link.png").symlink_to(secret)
    for path in [
        "/content/ava/notes.txt",  # not an image type
        "/content/ava/missing.png",
        "/content/ava/link.png",  # a symlink out of the content root
        "/content/..%2Fsecret.png",
        "/content/ava/..%2F..%2Fsecret.png",
        "/content/%2Fetc%2Fpasswd",
        "/content/ava/.hidden.png",
    ]:
        response = client.get(path, headers=AUTH)
        assert response.status_code == 404, path
        assert error(response)["message"] == "no such content file"


def test_gallery_page_is_a_shell_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/gallery/batches/b1")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert 'data-batch-id="b1"' in page.text and '<script src="/gallery/static/gallery.js"' in page.text
    assert "b1-000" not in page.text  # no data without a token
    assert client.get("/gallery/static/gallery.js").headers["content-type"].startswith("text/javascript")
    # The shared token/fetch code loads first, from the same origin, for every page that uses it.
    common = '<script src="/gallery/static/common.js"'
    for path in ("/gallery/batches/b1", "/gallery/conversations", "/analytics"):
        html = client.get(path).text
        assert common in html and html.index(common) < html.index('<script src="/', html.index(common) + 1)
    assert "window.ContentForge" in client.get("/gallery/static/common.js").text
    assert client.get("/gallery/static/../app.py").status_code == 404
    assert client.get("/gallery/batches/%3Cscript%3E").status_code == 422


def test_cli_serve_refuses_unsafe_configurations(settings_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from contentforge.config import get_settings
    from contentforge_cli.main import app

    monkeypatch.delenv("CONTENTFORGE_API_TOKEN", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    no_token = runner.invoke(app, ["api", "serve", "--port", "18999"])
    assert no_token.exit_code == 2 and "CONTENTFORGE_API_TOKEN is not set" in no_token.output
    public = runner.invoke(app, ["api", "serve", "--host", "0.0.0.0", "--insecure-local"])
    assert public.exit_code == 2 and "only binds a loopback address" in public.output
