"""A cancelled or crashed batch run marks its unfinished pieces so, and a resume makes them (issue 14).

Before migration 0019 a cancelled batch's unmade pieces stayed ``planned``: the gallery, the status
counts and the API could not tell them from pieces still to come. Now ending a run ``cancelled`` or
``crashed`` (a hook, the flow body, or a lease found expired) moves the batch's ``planned`` pieces to
that status in the same transaction, finished pieces keep theirs, and taking the batch's lease again
(a resume with the batch id) turns them back to ``planned``. On SQLite and PostgreSQL; the migration
is checked on a database with rows in every table that references ``pieces``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from support.api import World, build_world

from contentforge.config import Settings
from contentforge.db import PlannedPiece
from contentforge.db.engine import alembic_config, migrate, migration_transaction
from contentforge.db.models import PIECE_STATUSES, utcnow
from contentforge.db.piece_ratings import PieceRatings
from contentforge.domain.models import GenerationRecord, PieceStatus

TOKEN = "piece-cancelled-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHILDREN = (
    "hooks",
    "moderation_verdicts",
    "cost_entries",
    "review_decisions",
    "publications",
    "piece_ratings",
)
"""Every table with a foreign key to ``pieces``: the SQLite rebuild must keep all their rows."""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    """``support.api``'s world: batch ``b1`` has five finished pieces and ``b1-005`` still planned."""
    url = (
        f"sqlite:///{tmp_path / 'cancelled.db'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    return build_world(Settings(_env_file=None, data_dir=tmp_path, database_url=url, api_token=TOKEN))


def _statuses(world: World, batch_id: str = "b1") -> dict[str, str]:
    return {row.id: row.status.value for row in world.repo.pieces(batch_id=batch_id)}


def _add_unfinished(world: World, count: int) -> list[str]:
    """More planned pieces in ``b1`` after the world's own ``b1-005``."""
    ids = [f"b1-{i:03d}" for i in range(6, 6 + count)]
    world.repo.add_planned_pieces(
        "b1", [PlannedPiece(pid, 6 + n, "FIT-001", "safe", "prompt", "", n) for n, pid in enumerate(ids)]
    )
    return ["b1-005", *ids]


# Repository: ending a run, resuming it


@pytest.mark.parametrize("ending", ["cancelled", "crashed"])
def test_ending_a_run_marks_only_the_unfinished_pieces_and_a_resume_plans_them_again(
    world: World, ending: str
) -> None:
    unfinished = _add_unfinished(world, 2)
    before = _statuses(world)
    finished = {pid: status for pid, status in before.items() if pid not in unfinished}
    assert set(finished.values()) == {"ready", "needs_review", "rejected"} and len(finished) == 5
    other_batch = _statuses(world, "b2")
    world.repo.acquire_batch_lease("b1", "run-1", ttl_s=60, flow_run_id="r1")

    assert world.repo.end_batch_run("b1", ending, owner="run-1")

    after = _statuses(world)
    assert {pid: after[pid] for pid in unfinished} == dict.fromkeys(unfinished, ending)
    assert {pid: after[pid] for pid in finished} == finished, "finished pieces keep their status"
    assert _statuses(world, "b2") == other_batch, "another batch is untouched"
    stats = world.repo.batch_stats("b1")
    assert stats.status == ending and stats.by_status[ending] == 3 and stats.by_status["planned"] == 0
    (listed,) = [b for b in world.repo.latest_batches() if b.id == "b1"]
    assert listed.by_status[ending] == 3 and listed.by_status["planned"] == 0
    assert world.repo.pieces(batch_id="b1", status=PieceStatus(ending))[0].id == unfinished[0]

    world.repo.acquire_batch_lease("b1", "run-2", ttl_s=60, flow_run_id="r2")  # the resume

    resumed = _statuses(world)
    assert {pid: resumed[pid] for pid in unfinished} == dict.fromkeys(unfinished, "planned")
    assert {pid: resumed[pid] for pid in finished} == finished
    assert world.repo.batch_stats("b1").status == "running"


def test_a_run_that_lost_its_batch_or_failed_leaves_the_pieces_planned(world: World) -> None:
    world.repo.acquire_batch_lease("b1", "run-1", ttl_s=60)
    assert not world.repo.end_batch_run("b1", "cancelled", owner="someone else"), "not the holder"
    assert _statuses(world)["b1-005"] == "planned"
    assert world.repo.end_batch_run("b1", "failed", owner="run-1")
    assert _statuses(world)["b1-005"] == "planned", "a failed run's pieces are still to come"
    assert not world.repo.end_batch_run("b1", "cancelled"), "a batch no longer running is left alone"
    assert _statuses(world)["b1-005"] == "planned"


def test_a_run_found_with_an_expired_lease_leaves_its_pieces_crashed(world: World) -> None:
    world.repo.acquire_batch_lease("b1", "killed -9", ttl_s=-1)  # its lease simply ran out
    world.repo.acquire_batch_lease("b2", "alive", ttl_s=60)
    world.repo.add_planned_pieces("b2", [PlannedPiece("b2-002", 2, "FIT-001", "safe", "p", "", 2)])
    assert world.repo.reconcile_expired_batches() == ["b1"]
    assert _statuses(world)["b1-005"] == "crashed"
    assert _statuses(world, "b2")["b2-002"] == "planned", "a live runner's batch is left alone"


def test_a_generation_stored_after_the_cancel_is_kept(world: World) -> None:
    """A generation already running when the run stopped is stored; its piece reads ``generated``."""
    world.repo.acquire_batch_lease("b1", "run-1", ttl_s=60)
    assert world.repo.end_batch_run("b1", "cancelled", owner="run-1")
    now = utcnow()
    record = GenerationRecord(
        prompt="p", negative_prompt="", seed=5, model="m", backend="fake", steps=1, guidance_scale=1.0,
        width=8, height=8, scheduler="s",
    )  # fmt: skip
    world.repo.mark_generated(
        "b1-005", record=record, storage_key="k", url="u", content_sha256="0" * 64,
        queued_at=now - timedelta(seconds=2), started_at=now - timedelta(seconds=1), finished_at=now,
        generation_seconds=1.0, cost_usd=0.0,
    )  # fmt: skip
    assert _statuses(world)["b1-005"] == "generated"
    world.repo.acquire_batch_lease("b1", "run-2", ttl_s=60)
    assert _statuses(world)["b1-005"] == "generated", "a resume leaves a made piece alone"


def test_finishing_a_batch_cancelled_marks_its_unfinished_pieces_too(world: World) -> None:
    world.repo.acquire_batch_lease("b1", "run-1", ttl_s=60)
    assert world.repo.finish_batch("b1", status="cancelled", summary={}, owner="run-1")
    assert _statuses(world)["b1-005"] == "cancelled"


# API: counts, filters and the OpenAPI enums


@pytest.fixture()
def api(world: World) -> Iterator[TestClient]:
    from contentforge_api.app import create_app

    with TestClient(create_app(world.settings)) as client:
        yield client


def test_the_api_counts_filters_and_documents_the_new_statuses(api: TestClient, world: World) -> None:
    world.repo.acquire_batch_lease("b1", "run-1", ttl_s=60)
    assert world.repo.end_batch_run("b1", "cancelled", owner="run-1")

    batch = api.get("/api/v1/batches/b1", headers=AUTH).json()
    assert batch["status"] == "cancelled"
    assert batch["stats"]["by_status"]["cancelled"] == 1 and batch["stats"]["by_status"]["crashed"] == 0
    pieces = {p["id"]: p["status"] for p in api.get("/api/v1/batches/b1/pieces", headers=AUTH).json()}
    assert pieces["b1-005"] == "cancelled" and pieces["b1-000"] == "ready"
    stats = api.get("/api/v1/personas/ava/stats", headers=AUTH).json()
    assert stats["by_status"]["cancelled"] == 1 and stats["by_status"]["planned"] == 0
    page = api.get("/api/v1/personas/ava/content?status=cancelled", headers=AUTH)
    assert page.status_code == 200, page.text
    assert [item["id"] for item in page.json()["items"]] == ["b1-005"]
    assert api.get("/api/v1/personas/ava/content?status=crashed", headers=AUTH).json()["items"] == []
    refused = api.get("/api/v1/personas/ava/content?status=halted", headers=AUTH)
    assert refused.status_code == 422, "an unknown status is still refused"

    enum = api.get("/api/v1/openapi.json").json()["components"]["schemas"]["PieceStatus"]["enum"]
    assert enum == list(PIECE_STATUSES)


# Migration 0019


def _child_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {name: conn.execute(text(f"SELECT COUNT(*) FROM {name}")).scalar_one() for name in CHILDREN}


def _set_status(engine: Engine, piece_id: str, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE pieces SET status = :s WHERE id = :p"), {"s": status, "p": piece_id})


def test_migration_0019_keeps_every_child_row_and_its_downgrade_plans_the_pieces_again(world: World) -> None:
    engine = world.repo.engine
    PieceRatings(world.repo.sessions).claim("b1-000", "api", 4)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO review_decisions (piece_id, decision, reviewer, reason, created_at)"
                " VALUES ('b1-002', 'approve', 'rita', '', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO publications (piece_id, platform, publisher, idempotency_key, status, caption,"
                " attempts, created_at, updated_at) VALUES ('b1-000', 'instagram', 'fake', 'k1', 'published',"
                " 'c', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    _add_unfinished(world, 1)
    _set_status(engine, "b1-005", "cancelled")
    _set_status(engine, "b1-006", "crashed")
    children = _child_counts(engine)
    assert all(children.values()), children  # every referencing table has rows to lose
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("pieces")}

    with migration_transaction(engine) as conn:
        command.downgrade(alembic_config(conn), "0018_piece_ratings")
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT id, status FROM pieces WHERE batch_id = 'b1'")).all())
    assert rows["b1-005"] == rows["b1-006"] == "planned", "downgraded to the status they had before 0019"
    assert rows["b1-000"] == "ready"
    assert _child_counts(engine) == children
    with pytest.raises(IntegrityError):
        _set_status(engine, "b1-005", "cancelled")  # 0018's constraint is back

    if engine.dialect.name == "sqlite":  # the unsafe way is refused, not silently destructive
        with pytest.raises(RuntimeError, match="foreign keys off"), engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0019_piece_cancelled")
    migrate(world.settings.resolved_database_url)

    assert _child_counts(engine) == children, "the rebuild kept every hook, verdict, cost, rating..."
    assert {ix["name"] for ix in inspect(engine).get_indexes("pieces")} == indexes
    _set_status(engine, "b1-005", "crashed")
    with pytest.raises(IntegrityError):
        _set_status(engine, "b1-005", "halted")
    with engine.begin() as conn:  # the foreign keys survived the rebuild: deleting a piece cascades
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        conn.execute(text("DELETE FROM pieces WHERE id = 'b1-000'"))
        assert conn.execute(text("SELECT COUNT(*) FROM hooks WHERE piece_id = 'b1-000'")).scalar_one() == 0
        assert conn.execute(text("SELECT COUNT(*) FROM piece_ratings")).scalar_one() == 0
