"""Database layer: packaged migrations, model/migration parity and the repository, on SQLite and PostgreSQL.

PostgreSQL tests run in a database created for this test session (dropped afterwards), each test in
a fresh schema. Without a reachable server they skip, except under ``CI=true`` where they fail, so
CI can never pass by silently testing SQLite only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, Integer, MetaData, inspect, select, text

from contentforge.db import PieceRow, PlannedPiece, RecordNotFound, Repository, make_engine, migrate
from contentforge.db.engine import alembic_config, migration_transaction
from contentforge.db.models import Base, CostEntryORM, ModerationVerdictORM
from contentforge.domain.models import (
    GenerationRecord,
    Hook,
    HookStyle,
    LoraRef,
    ModerationVerdict,
    Persona,
    PieceStatus,
    Platform,
    Verdict,
)
from contentforge.errors import InvalidInput, InvalidPersona, UnknownPersona

REPO_ROOT = Path(__file__).resolve().parents[1]
TABLES = {"brands", "personas", "batches", "pieces", "hooks", "moderation_verdicts", "cost_entries"}
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


# Fixtures


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'contentforge.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    migrate(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def repo(engine: Engine) -> Repository:
    return Repository(engine)


def make_persona(persona_id: str = "mia", name: str = "Mia Fit") -> Persona:
    return Persona(
        id=persona_id,
        name=name,
        niche="Fitness",
        appearance="athletic woman, short dark hair",
        personality_traits=["upbeat"],
        interests=["running"],
        tone="warm and direct",
        platforms=[Platform.instagram],
    )


def make_record(seed: int, backend: str = "tiny") -> GenerationRecord:
    return GenerationRecord(
        backend=backend,
        model="tiny-sdxl",
        prompt=f"prompt {seed}",
        negative_prompt="blurry",
        seed=seed,
        steps=4,
        guidance_scale=5.0,
        width=128,
        height=128,
        scheduler="euler",
        loras=(LoraRef(source="mia.safetensors", scale=0.8),),
    )


def planned(batch_id: str, indexes: range, prompt: str = "plan") -> list[PlannedPiece]:
    return [
        PlannedPiece(
            piece_id=f"{batch_id}-{i:03d}",
            index=i,
            template_id="FIT-001",
            template_tier="safe" if i % 2 == 0 else "suggestive",
            prompt=f"{prompt} {i}",
            negative_prompt="",
            seed=2**62 + i,
        )
        for i in indexes
    ]


def start_batch(repo: Repository, batch_id: str = "b1", persona_id: str = "mia", **overrides: object) -> None:
    kwargs: dict = {
        "batch_id": batch_id,
        "persona_id": persona_id,
        "platform": "instagram",
        "num_pieces": 4,
        "tier_mix": {"safe": 0.5, "suggestive": 0.5},
        "seed": 42,
        "params": {"steps": 4},
        "flow_run_id": None,
    } | overrides
    repo.create_batch(**kwargs)


def generate(
    repo: Repository, piece_id: str, *, seed: int, sha: str, cost: float, seconds: float = 2.0
) -> None:
    repo.mark_generated(
        piece_id,
        record=make_record(seed),
        storage_key=f"mia/{piece_id}.png",
        url=f"file:///data/mia/{piece_id}.png",
        content_sha256=sha,
        queued_at=T0,
        started_at=T0 + timedelta(seconds=1),
        finished_at=T0 + timedelta(seconds=1 + seconds),
        generation_seconds=seconds,
        cost_usd=cost,
    )


def verdict(kind: Verdict, *reasons: str) -> ModerationVerdict:
    return ModerationVerdict(verdict=kind, scores={"sexual": 0.1}, reasons=list(reasons), backends=["stub"])


def hook(text_: str, platform: Platform = Platform.instagram) -> Hook:
    return Hook(
        style=HookStyle.question, text=text_, call_to_action="Follow", hashtags=["fit"], platform=platform
    )


# Migrations


def test_migrate_creates_the_schema_and_a_second_run_is_a_no_op(db_url: str) -> None:
    migrate(db_url)
    engine = make_engine(db_url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
        Repository(engine).upsert_persona(make_persona())
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()

        migrate(db_url)

        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
        assert Repository(engine).get_persona("mia") is not None, "second migrate must not touch data"
    finally:
        engine.dispose()


def test_models_and_migrations_describe_the_same_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []

        # The comparison must be able to fail: a model with an extra column is reported.
        drifted = MetaData(naming_convention=Base.metadata.naming_convention)
        for table in Base.metadata.tables.values():
            table.to_metadata(drifted)
        drifted.tables["pieces"].append_column(Column("unmigrated", Integer))
        diff = compare_metadata(context, drifted)
        assert [(op[0], op[3].name) for op in diff] == [("add_column", "unmigrated")]


def test_downgrade_to_base_removes_every_table_and_upgrade_restores_them(engine: Engine) -> None:
    with migration_transaction(engine) as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(engine).get_table_names()) & TABLES == set()
    with migration_transaction(engine) as conn:
        command.upgrade(alembic_config(conn), "head")
    assert set(inspect(engine).get_table_names()) >= TABLES


@pytest.mark.slow
def test_concurrent_processes_migrating_one_fresh_database_all_succeed(db_url: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    code = "import sys; from contentforge.db import migrate; migrate(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, db_url], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], "\n".join(errors)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert len(conn.execute(text("SELECT version_num FROM alembic_version")).all()) == 1
    finally:
        engine.dispose()


def test_migrate_works_from_any_directory_and_creates_the_sqlite_parent_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    migrate("sqlite:///relative/dir/cf.db")
    engine = make_engine("sqlite:///relative/dir/cf.db")
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
    assert (tmp_path / "relative" / "dir" / "cf.db").is_file()


# Repository


def test_persona_upsert_then_get_by_id_name_and_case_insensitive_name(repo: Repository) -> None:
    persona = make_persona()
    repo.upsert_persona(persona)
    assert repo.get_persona("mia") == persona
    assert repo.get_persona("Mia Fit") == persona
    assert repo.get_persona("mia fit") == persona
    assert repo.get_persona("nobody") is None

    renamed = persona.model_copy(update={"name": "Mia Runs", "tone": "calm"})
    repo.upsert_persona(renamed)
    assert repo.get_persona("mia") == renamed
    assert repo.get_persona("Mia Fit") is None
    assert [p.id for p in repo.list_personas()] == ["mia"]


def test_a_second_persona_with_a_taken_name_is_refused(repo: Repository) -> None:
    repo.upsert_persona(make_persona("mia", "Mia"))
    with pytest.raises(InvalidPersona, match="already used"):
        repo.upsert_persona(make_persona("mia2", "Mia"))
    assert [p.id for p in repo.list_personas()] == ["mia"]


def test_batch_needs_a_known_persona_and_never_stores_secrets(repo: Repository, engine: Engine) -> None:
    with pytest.raises(UnknownPersona):
        start_batch(repo, persona_id="ghost")
    repo.upsert_persona(make_persona())
    start_batch(
        repo,
        params={
            "openai_api_key": "sk-abcdefghijklmnopqrstuvwx",
            "max_tokens": 200,
            "note": "Bearer abc.def.ghi",
        },
    )
    start_batch(repo)  # a retried flow repeats the call: no error, first record kept

    with engine.connect() as conn:
        dump = str(conn.execute(text("SELECT params FROM batches")).scalar_one())
    assert "sk-abc" not in dump
    assert "abc.def" not in dump
    assert "200" in dump, "harmless keys like max_tokens stay"


def test_planned_pieces_are_idempotent_per_batch_and_index(repo: Repository) -> None:
    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.add_planned_pieces("b1", planned("b1", range(3)))
    repo.add_planned_pieces("b1", planned("b1", range(4), prompt="changed"))

    rows = repo.pieces(batch_id="b1")
    assert [r.index for r in rows] == [0, 1, 2, 3]
    assert [r.prompt for r in rows] == ["plan 0", "plan 1", "plan 2", "changed 3"]
    assert all(r.status == PieceStatus.planned and r.persona_id == "mia" for r in rows)
    assert rows[1].seed == 2**62 + 1, "seeds beyond 32 bits survive"
    with pytest.raises(RecordNotFound):
        repo.add_planned_pieces("nope", planned("nope", range(1)))


def test_mark_generated_records_everything_and_rerun_keeps_one_cost_entry(
    repo: Repository, engine: Engine
) -> None:
    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.add_planned_pieces("b1", planned("b1", range(2)))

    generate(repo, "b1-000", seed=7, sha="a" * 64, cost=0.01)
    repo.save_verdict("b1-000", verdict(Verdict.safe))
    generate(repo, "b1-000", seed=7, sha="a" * 64, cost=0.02)  # rerun, same bytes

    piece = repo.get_piece("b1-000")
    assert isinstance(piece, PieceRow)
    assert piece.status == PieceStatus.ready and piece.verdict == Verdict.safe, "same image keeps its verdict"
    assert piece.record == make_record(7)
    assert piece.generation_fingerprint == make_record(7).fingerprint()
    assert (piece.seed, piece.steps, piece.width, piece.loras[0]["source"]) == (7, 4, 128, "mia.safetensors")
    assert piece.started_at == T0 + timedelta(seconds=1)
    assert piece.started_at.tzinfo is not None and piece.started_at.utcoffset() == timedelta(0)
    with engine.connect() as conn:
        costs = conn.execute(select(CostEntryORM.kind, CostEntryORM.amount_usd)).all()
    assert [tuple(c) for c in costs] == [("image", 0.02)]

    generate(repo, "b1-000", seed=7, sha="b" * 64, cost=0.02)  # different bytes: moderate again
    piece = repo.get_piece("b1-000")
    assert piece is not None and piece.status == PieceStatus.generated and piece.verdict is None

    with pytest.raises(RecordNotFound):
        generate(repo, "missing", seed=1, sha="c" * 64, cost=0.0)
    with pytest.raises(InvalidInput, match="timezone-aware"):
        repo.mark_generated(
            "b1-001",
            record=make_record(1),
            storage_key="k",
            url="u",
            content_sha256="d" * 64,
            queued_at=datetime(2026, 1, 1),
            started_at=T0,
            finished_at=T0,
            generation_seconds=1,
            cost_usd=0,
        )


def test_times_in_other_zones_come_back_as_the_same_instant_in_utc(repo: Repository) -> None:
    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.add_planned_pieces("b1", planned("b1", range(1)))
    berlin = timezone(timedelta(hours=1))
    repo.mark_generated(
        "b1-000",
        record=make_record(1),
        storage_key="k",
        url="u",
        content_sha256="d" * 64,
        queued_at=datetime(2026, 1, 1, 13, 0, tzinfo=berlin),
        started_at=T0,
        finished_at=T0,
        generation_seconds=1,
        cost_usd=0,
    )
    piece = repo.get_piece("b1-000")
    assert piece is not None and piece.queued_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert piece.queued_at.tzinfo == UTC


def test_rejected_verdict_keeps_the_piece_with_its_reasons(repo: Repository, engine: Engine) -> None:
    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.add_planned_pieces("b1", planned("b1", range(1)))
    with pytest.raises(InvalidInput, match="planned"):
        repo.save_verdict("b1-000", verdict(Verdict.safe))
    generate(repo, "b1-000", seed=1, sha="a" * 64, cost=0.01)
    repo.save_verdict("b1-000", verdict(Verdict.suggestive))
    repo.save_verdict("b1-000", verdict(Verdict.rejected, "violence 0.91 >= 0.70"))

    piece = repo.get_piece("b1-000")
    assert piece is not None
    assert piece.status == PieceStatus.rejected
    assert piece.verdict == Verdict.rejected and piece.tier is None
    assert piece.moderation_reasons == ["violence 0.91 >= 0.70"]
    assert piece.moderation_scores == {"sexual": 0.1}
    assert piece.storage_key == "mia/b1-000.png"
    assert [p.id for p in repo.pieces(status="rejected")] == ["b1-000"]
    with engine.connect() as conn:
        history = conn.execute(
            select(ModerationVerdictORM.verdict).order_by(ModerationVerdictORM.id)
        ).scalars()
        assert list(history) == ["suggestive", "rejected"]


def test_a_verdict_with_review_reasons_goes_straight_to_needs_review(repo: Repository) -> None:
    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.add_planned_pieces("b1", planned("b1", range(2)))
    generate(repo, "b1-000", seed=1, sha="a" * 64, cost=0.01)
    generate(repo, "b1-001", seed=2, sha="b" * 64, cost=0.01)

    repo.save_verdict("b1-000", verdict(Verdict.suggestive, "sexual 0.42"), review_reasons=["borderline"])
    repo.save_verdict("b1-001", verdict(Verdict.rejected, "hate 0.9"), review_reasons=["borderline"])

    held = repo.get_piece("b1-000")
    assert held is not None and held.status == PieceStatus.needs_review
    assert held.verdict == Verdict.suggestive
    assert held.moderation_reasons == ["needs review: borderline", "sexual 0.42"]
    refused = repo.get_piece("b1-001")
    assert refused is not None and refused.status == PieceStatus.rejected, "a rejection is never held"


def test_save_hooks_replaces_only_that_platform(repo: Repository) -> None:
    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.add_planned_pieces("b1", planned("b1", range(1)))
    repo.save_hooks("b1-000", [hook("ig one"), hook("ig two"), hook("tt one", Platform.tiktok)])
    repo.save_hooks("b1-000", [hook("ig new")])

    piece = repo.get_piece("b1-000")
    assert piece is not None
    assert [(h.platform, h.text) for h in piece.hooks] == [("instagram", "ig new"), ("tiktok", "tt one")]
    with pytest.raises(RecordNotFound):
        repo.save_hooks("missing", [hook("x")])


def test_mark_failed_records_a_redacted_error(repo: Repository) -> None:
    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.add_planned_pieces("b1", planned("b1", range(1)))
    repo.mark_failed("b1-000", "401 for key sk-live0123456789abcdefghij: " + "x" * 20_000)
    piece = repo.get_piece("b1-000")
    assert piece is not None and piece.status == PieceStatus.failed
    assert piece.error is not None and piece.error.startswith("401 for key [redacted]: xxx")
    assert len(piece.error) == 10_000


def test_batch_stats_and_latest_batches(repo: Repository) -> None:
    repo.upsert_persona(make_persona())
    start_batch(repo, "old")
    start_batch(repo, "b1")
    repo.add_planned_pieces("b1", planned("b1", range(4)))
    generate(repo, "b1-000", seed=0, sha="0" * 64, cost=0.01, seconds=2.0)
    generate(repo, "b1-001", seed=1, sha="1" * 64, cost=0.03, seconds=4.0)
    generate(repo, "b1-002", seed=2, sha="2" * 64, cost=0.02, seconds=6.0)
    repo.save_hooks("b1-000", [hook("a"), hook("b"), hook("c")])  # hooks first: they are moderated too
    repo.save_hooks("b1-001", [hook("d")])
    repo.save_verdict("b1-000", verdict(Verdict.safe))
    repo.save_verdict("b1-001", verdict(Verdict.suggestive))
    repo.save_verdict("b1-002", verdict(Verdict.rejected, "too much"))
    repo.mark_failed("b1-003", "boom")
    repo.add_cost("b1", kind="text", provider="template", amount_usd=0.04, piece_id="b1-000")
    repo.finish_batch("b1", status="completed", summary={"ready": 2, "anthropic_api_key": "sk-x"})

    stats = repo.batch_stats("b1")
    assert stats.pieces == 4
    assert stats.by_status == {
        "planned": 0,
        "generated": 0,
        "ready": 2,
        "needs_review": 0,
        "rejected": 1,
        "failed": 1,
        "cancelled": 0,
        "crashed": 0,
    }
    assert stats.by_verdict == {"safe": 1, "suggestive": 1, "rejected": 1}
    assert stats.by_tier == {"safe": 1, "suggestive": 1}
    assert stats.by_template_tier == {"safe": 2, "suggestive": 2}
    assert stats.generated == 3
    assert stats.cost_usd_total == pytest.approx(0.10)
    assert stats.cost_usd_by_kind == pytest.approx(
        {"image": 0.06, "text": 0.04, "moderation": 0.0, "publishing": 0.0}
    )
    assert stats.cost_usd_mean == pytest.approx(0.10 / 3)
    assert stats.generation_seconds_mean == pytest.approx(4.0)
    assert stats.hooks == 4
    assert stats.status == "completed"

    latest = repo.latest_batches(limit=1)
    assert [b.id for b in latest] == ["b1"]
    assert latest[0].persona_name == "Mia Fit"
    assert latest[0].summary == {"ready": 2, "anthropic_api_key": "[redacted]"}
    assert latest[0].by_status["ready"] == 2
    assert [b.id for b in repo.latest_batches()] == ["b1", "old"]
    with pytest.raises(InvalidInput):
        repo.finish_batch("b1", status="running", summary={})
    with pytest.raises(RecordNotFound):
        repo.batch_stats("nope")


def test_eight_threads_write_pieces_at_once_without_lock_errors(repo: Repository) -> None:
    threads_n, per_thread = 8, 12
    repo.upsert_persona(make_persona())
    start_batch(repo, num_pieces=threads_n * per_thread)
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            pieces = planned("b1", range(t * per_thread, (t + 1) * per_thread))
            barrier.wait()
            repo.add_planned_pieces("b1", pieces)
            for p in pieces:
                generate(repo, p.piece_id, seed=p.index, sha=f"{p.index:064d}", cost=0.01)
                repo.save_hooks(p.piece_id, [hook(f"hook {p.index}")])
                repo.save_verdict(p.piece_id, verdict(Verdict.rejected if p.index % 4 == 0 else Verdict.safe))
                repo.get_piece(p.piece_id)
            repo.batch_stats("b1")
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert errors == []
    stats = repo.batch_stats("b1")
    total = threads_n * per_thread
    assert stats.pieces == total
    assert stats.by_status["rejected"] == total // 4
    assert stats.by_status["ready"] == total - total // 4
    assert stats.hooks == total
    assert stats.cost_usd_total == pytest.approx(0.01 * total)


# Strategy costs (migration 0004)


def _columns(engine: Engine, table: str) -> dict[str, bool]:
    return {c["name"]: c["nullable"] for c in inspect(engine).get_columns(table)}


def _raw_batch(conn: object, batch_id: str, persona_id: str) -> None:
    conn.execute(  # type: ignore[attr-defined]
        text(
            "INSERT INTO batches (id, persona_id, platform, num_pieces, tier_mix, seed, params, status,"
            " started_at) VALUES (:id, :persona, 'instagram', 4, '{}', 42, '{}', 'running',"
            " CURRENT_TIMESTAMP)"
        ),
        {"id": batch_id, "persona": persona_id},
    )


def _raw_cost(conn: object, batch_id: str | None, step: str | None = None, kind: str = "text") -> None:
    columns = "batch_id, kind, provider, amount_usd, created_at" + (", step" if step else "")
    values = ":batch, :kind, 'p', 1.0, CURRENT_TIMESTAMP" + (", :step" if step else "")
    conn.execute(  # type: ignore[attr-defined]
        text(f"INSERT INTO cost_entries ({columns}) VALUES ({values})"),
        {"batch": batch_id, "kind": kind, "step": step},
    )


def test_migration_0004_makes_batch_optional_and_its_downgrade_drops_only_strategy_charges(
    db_url: str,
) -> None:
    from sqlalchemy.exc import IntegrityError

    engine = make_engine(db_url)
    try:
        with migration_transaction(engine) as conn:
            command.upgrade(alembic_config(conn), "0003_strategy")
        assert _columns(engine, "cost_entries")["batch_id"] is False and "step" not in _columns(
            engine, "cost_entries"
        )
        repo = Repository(engine)
        repo.upsert_persona(make_persona())
        with engine.begin() as conn:  # raw: today's ORM knows columns that revision 0003 lacks
            _raw_batch(conn, "b1", "mia")
            _raw_cost(conn, "b1", kind="image")

        with migration_transaction(engine) as conn:
            command.upgrade(alembic_config(conn), "0004_strategy_costs")
        columns = _columns(engine, "cost_entries")
        assert columns["batch_id"] is True
        assert {"step", "brand_id", "persona_id", "subject_id"} <= set(columns)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO cost_entries (step, persona_id, kind, provider, amount_usd, created_at)"
                    " VALUES ('plan_topics', 'mia', 'text', 'anthropic', 0.25, CURRENT_TIMESTAMP)"
                )
            )
        for batch_id, step, why in (
            (None, None, "a charge must belong to a batch or a strategy step"),
            (None, "bogus_step", "the step must be a known one"),
            ("b1", None, "kind must still be checked after the table rebuild"),
        ):
            with pytest.raises(IntegrityError), engine.begin() as conn:
                _raw_cost(conn, batch_id, step, kind="image" if batch_id is None else "bogus")
                pytest.fail(why)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT batch_id, step, amount_usd FROM cost_entries ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [("b1", None, 1.0), (None, "plan_topics", 0.25)]
        with engine.connect() as conn:
            batch_total = conn.execute(text("SELECT SUM(amount_usd) FROM cost_entries WHERE batch_id = 'b1'"))
            assert batch_total.scalar() == pytest.approx(1.0), "batch sums ignore strategy"

        with migration_transaction(engine) as conn:
            command.downgrade(alembic_config(conn), "0003_strategy")
        columns = _columns(engine, "cost_entries")
        assert columns["batch_id"] is False and "step" not in columns and "persona_id" not in columns
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT batch_id, amount_usd FROM cost_entries")).all()
        assert [tuple(r) for r in rows] == [("b1", 1.0)], "only the strategy charge is gone"
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _raw_cost(conn, None)

        migrate(db_url)
        assert _columns(engine, "cost_entries")["batch_id"] is True
    finally:
        engine.dispose()


# Prompt sources on the piece (migration 0006)


def test_migration_0006_moves_prompt_sources_from_batch_params_to_pieces_and_back(db_url: str) -> None:
    from sqlalchemy import JSON, column, table

    from contentforge.db.models import UtcDateTime

    batches = table(
        "batches",
        *(column(n) for n in ("id", "persona_id", "platform", "num_pieces", "seed", "status")),
        column("started_at", UtcDateTime()),
        column("tier_mix", JSON),
        column("params", JSON),
    )
    piece_columns = ("id", "batch_id", "persona_id", "index", "template_id", "template_tier", "status")
    pieces = table(
        "pieces",
        *(column(n) for n in (*piece_columns, "prompt", "negative_prompt", "seed")),
        column("created_at", UtcDateTime()),
        column("updated_at", UtcDateTime()),
    )
    hooks = table(
        "hooks",
        *(column(n) for n in ("piece_id", "position", "style", "platform", "text")),
        column("call_to_action"),
        column("hashtags", JSON),
    )
    engine = make_engine(db_url)
    try:
        with migration_transaction(engine) as conn:
            command.upgrade(alembic_config(conn), "0005_fault_tolerance")
        Repository(engine).upsert_persona(make_persona())
        old_params = {
            "steps": 4,
            "prompt_sources": {"b1-000": "llm", "b1-001": "rules", "no-such-piece": "llm"},
            "prompt_fallbacks": {"b1-001": "provider said 429"},
        }
        with engine.begin() as conn:  # raw: today's ORM knows columns that revision 0005 lacks
            conn.execute(
                batches.insert().values(
                    id="b1",
                    persona_id="mia",
                    platform="instagram",
                    num_pieces=3,
                    seed=1,
                    status="running",
                    started_at=T0,
                    tier_mix={},
                    params=old_params,
                )
            )
            conn.execute(
                batches.insert().values(
                    id="b2",
                    persona_id="mia",
                    platform="instagram",
                    num_pieces=1,
                    seed=1,
                    status="running",
                    started_at=T0,
                    tier_mix={},
                    params={"steps": 8},
                )
            )
            for batch_id, index in (("b1", 0), ("b1", 1), ("b1", 2), ("b2", 0)):
                conn.execute(
                    pieces.insert().values(
                        id=f"{batch_id}-{index:03d}",
                        batch_id=batch_id,
                        persona_id="mia",
                        index=index,
                        template_id="FIT-001",
                        template_tier="safe",
                        status="planned",
                        prompt="p",
                        negative_prompt="",
                        seed=index,
                        created_at=T0,
                        updated_at=T0,
                    )
                )
            conn.execute(
                hooks.insert().values(
                    piece_id="b1-001",
                    position=0,
                    style="question",
                    platform="instagram",
                    text="t",
                    call_to_action="Follow",
                    hashtags=[],
                )
            )

        with migration_transaction(engine) as conn:
            command.upgrade(alembic_config(conn), "0006_piece_prompt_sources")
        repo = Repository(engine)
        assert repo.prompt_sources("b1") == {"b1-000": "llm", "b1-001": "rules"}
        assert repo.prompt_sources("b2") == {}
        with engine.connect() as conn:  # raw: today's ORM knows columns later revisions add (0013)
            fallback = conn.execute(text("SELECT prompt_fallback FROM pieces WHERE id = 'b1-001'")).scalar()
            kept_hooks = conn.execute(text("SELECT COUNT(*) FROM hooks WHERE piece_id = 'b1-001'")).scalar()
        assert fallback == "provider said 429"
        assert kept_hooks == 1, "adding the columns rebuilt no table"
        with engine.connect() as conn:
            params = dict(conn.execute(select(batches.c.id, batches.c.params)).tuples().all())
        assert params == {"b1": {"steps": 4}, "b2": {"steps": 8}}, "the sources left the batch JSON"

        repo.set_prompt_sources("b1", {"b1-002": ("llm", None)})
        with migration_transaction(engine) as conn:
            command.downgrade(alembic_config(conn), "0005_fault_tolerance")
        assert not {"prompt_source", "prompt_fallback"} & set(_columns(engine, "pieces"))
        with engine.connect() as conn:
            params = dict(conn.execute(select(batches.c.id, batches.c.params)).tuples().all())
            hook_count = conn.execute(text("SELECT COUNT(*) FROM hooks")).scalar()
        assert params == {
            "b1": {
                "steps": 4,
                "prompt_sources": {"b1-000": "llm", "b1-001": "rules", "b1-002": "llm"},
                "prompt_fallbacks": {"b1-001": "provider said 429"},
            },
            "b2": {"steps": 8},
        }
        assert hook_count == 1, "dropping the columns deleted no hook"

        migrate(db_url)
        assert Repository(engine).prompt_sources("b1") == {
            "b1-000": "llm",
            "b1-001": "rules",
            "b1-002": "llm",
        }
    finally:
        engine.dispose()


def test_strategy_costs_and_the_cost_report_by_persona_and_brand(repo: Repository, engine: Engine) -> None:
    from contentforge.domain.strategy import BrandDNA
    from contentforge.strategy.store import StrategyStore

    strategy = StrategyStore(engine)
    strategy.save_brand("Trailbean", BrandDNA(brand="Trailbean"))
    repo.upsert_persona(make_persona())
    repo.upsert_persona(make_persona("zoe", "Zoe"))
    strategy.link_personas("trailbean", ["mia"])
    start_batch(repo, "b1")
    start_batch(repo, "b2", persona_id="zoe")
    repo.add_planned_pieces("b1", planned("b1", range(1)))
    generate(repo, "b1-000", seed=0, sha="0" * 64, cost=0.5)
    repo.add_cost("b1", kind="text", provider="anthropic", amount_usd=0.25, piece_id="b1-000")
    repo.add_cost("b2", kind="moderation", provider="openai", amount_usd=0.125)

    def charge(step: str, usd: float, tokens: tuple[int, int], **who: str) -> None:
        detail = {"input_tokens": tokens[0], "output_tokens": tokens[1], "calls": 1, "api_key": "sk-secret"}
        repo.add_strategy_cost(step, provider="anthropic", amount_usd=usd, detail=detail, **who)

    charge("research_brand", 0.01, (1000, 200), brand_id="trailbean")
    charge("plan_topics", 0.02, (300, 400), brand_id="trailbean", persona_id="mia", subject_id="2026-07")
    charge("plan_topics", 0.04, (10, 20), brand_id="trailbean", persona_id="mia", subject_id="2026-08")
    charge("write_blog_post", 0.08, (5, 5), persona_id="zoe", subject_id="post-z")
    with pytest.raises(InvalidInput, match="strategy step must be one of"):
        repo.add_strategy_cost("brainstorm", provider="x", amount_usd=1.0)

    everything = repo.cost_report()
    assert [(b.batch_id, b.persona_id, b.entries) for b in everything.batches] == [
        ("b1", "mia", 2),
        ("b2", "zoe", 1),
    ]
    assert everything.batches[0].usd_by_kind == pytest.approx({"image": 0.5, "text": 0.25})
    assert [(s.step, s.calls, s.input_tokens, s.output_tokens) for s in everything.steps] == [
        ("research_brand", 1, 1000, 200),
        ("plan_topics", 2, 310, 420),
        ("write_blog_post", 1, 5, 5),
    ]
    assert everything.total_usd == pytest.approx(0.5 + 0.25 + 0.125 + 0.01 + 0.02 + 0.04 + 0.08)

    mia = repo.cost_report(persona_id="mia")
    assert [b.batch_id for b in mia.batches] == ["b1"] and [s.step for s in mia.steps] == ["plan_topics"]
    assert mia.total_usd == pytest.approx(0.75 + 0.06)
    brand = repo.cost_report(brand_id="trailbean")
    assert [b.batch_id for b in brand.batches] == ["b1"], "zoe is not linked to the brand"
    assert [s.step for s in brand.steps] == ["research_brand", "plan_topics"]
    assert brand.total_usd == pytest.approx(0.75 + 0.07)
    with engine.connect() as conn:
        details = (
            conn.execute(select(CostEntryORM.detail).where(CostEntryORM.step.is_not(None))).scalars().all()
        )
    assert all(d["api_key"] == "[redacted]" for d in details)


# One runner per batch: the lease (issue 12, item 2)


def test_a_second_runner_is_refused_naming_the_holder_until_the_lease_expires(repo: Repository) -> None:
    from contentforge.errors import BatchBusy

    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.acquire_batch_lease("b1", "host-a:pid 1:flow run r1", ttl_s=60, flow_run_id="r1")
    with pytest.raises(BatchBusy, match="already being run by host-a:pid 1:flow run r1"):
        repo.acquire_batch_lease("b1", "host-b:pid 2:flow run r2", ttl_s=60, flow_run_id="r2")
    assert repo.batch_lease("b1") is not None and repo.batch_lease("b1")[0] == "host-a:pid 1:flow run r1"
    assert repo.renew_batch_lease("b1", "host-a:pid 1:flow run r1", 60)
    assert not repo.renew_batch_lease("b1", "host-b:pid 2:flow run r2", 60), "only the holder renews"
    assert not repo.finish_batch("b1", status="completed", summary={}, owner="host-b:pid 2:flow run r2")

    # The holder dies without a word: once its lease ran out, a resume takes over and is the run of record.
    repo.acquire_batch_lease("b1", "host-a:pid 1:flow run r1", ttl_s=-1)  # renewed into the past
    repo.acquire_batch_lease("b1", "host-b:pid 2:flow run r2", ttl_s=60, flow_run_id="r2")
    assert repo.latest_batches()[0].flow_run_id == "r2", "the CLI links the run that holds the batch"
    assert not repo.renew_batch_lease("b1", "host-a:pid 1:flow run r1", 60), "the stalled runner lost it"
    assert not repo.finish_batch("b1", status="completed", summary={"x": 1}, owner="host-a:pid 1:flow run r1")
    assert repo.finish_batch("b1", status="completed", summary={"x": 2}, owner="host-b:pid 2:flow run r2")
    assert repo.batch_lease("b1") is None
    repo.acquire_batch_lease("b1", "host-c", ttl_s=60)  # a finished batch can be run again (a no-op resume)


def test_waiting_runner_gets_the_batch_when_the_holder_releases_it(repo: Repository) -> None:
    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.acquire_batch_lease("b1", "first", ttl_s=60)
    timer = threading.Timer(0.3, repo.release_batch_lease, ("b1", "first"))
    timer.start()
    repo.acquire_batch_lease("b1", "second", ttl_s=60, wait_s=10, poll_s=0.05)
    timer.join()
    assert repo.batch_lease("b1") is not None and repo.batch_lease("b1")[0] == "second"


def test_only_one_of_many_concurrent_runners_takes_the_lease(repo: Repository) -> None:
    from contentforge.errors import BatchBusy

    repo.upsert_persona(make_persona())
    start_batch(repo)
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def contend(owner: str) -> None:
        barrier.wait()
        try:
            repo.acquire_batch_lease("b1", owner, ttl_s=60)
            winners.append(owner)
        except BatchBusy:
            pass

    threads = [threading.Thread(target=contend, args=(f"runner-{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_crashed_runs_are_marked_by_their_hook_or_by_their_expired_lease(repo: Repository) -> None:
    repo.upsert_persona(make_persona())
    for batch_id in ("b1", "b2", "b3"):
        start_batch(repo, batch_id)
    repo.acquire_batch_lease("b1", "dead", ttl_s=-1)  # killed -9: its lease simply runs out
    repo.acquire_batch_lease("b2", "alive", ttl_s=60)
    repo.acquire_batch_lease("b3", "cancelled-run", ttl_s=60)
    assert not repo.end_batch_run("b3", "cancelled", owner="someone-else"), "only the holder's hook"
    assert repo.end_batch_run("b3", "cancelled", owner="cancelled-run")
    assert repo.reconcile_expired_batches() == ["b1"]
    status = {b.id: b.status for b in repo.latest_batches()}
    assert status == {"b1": "crashed", "b2": "running", "b3": "cancelled"}
    assert repo.batch_lease("b3") is None


# Verdicts bound to what they judged, charges keyed by what was paid for (issue 12, items 1 and 2)


def test_hooks_changed_after_moderation_send_the_piece_back_to_moderation(repo: Repository) -> None:
    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.add_planned_pieces("b1", planned("b1", range(1)))
    generate(repo, "b1-000", seed=0, sha="0" * 64, cost=0.01)
    repo.save_hooks("b1-000", [hook("original caption")])
    repo.save_verdict("b1-000", verdict(Verdict.safe))
    piece = repo.get_piece("b1-000")
    assert piece is not None and piece.status is PieceStatus.ready
    assert piece.moderated_hash == repo.content_hash("b1-000")

    assert not repo.save_hooks("b1-000", [hook("original caption")]), "the same hooks keep the verdict"
    assert repo.save_hooks("b1-000", [hook("a different caption nobody judged")])
    piece = repo.get_piece("b1-000")
    assert piece is not None and piece.status is PieceStatus.generated
    assert piece.verdict is None and piece.moderated_hash is None


def test_a_verdict_on_content_that_changed_while_it_was_judged_is_not_applied(repo: Repository) -> None:
    from contentforge.domain.binding import judged_hash, judged_texts

    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.add_planned_pieces("b1", planned("b1", range(1)))
    generate(repo, "b1-000", seed=0, sha="0" * 64, cost=0.01)
    repo.save_hooks("b1-000", [hook("what the moderator read")])
    piece = repo.get_piece("b1-000")
    assert piece is not None
    judged = judged_hash(piece.content_sha256, judged_texts(piece.prompt, piece.hooks))
    repo.save_hooks("b1-000", [hook("rewritten while moderation ran")])

    assert not repo.save_verdict("b1-000", verdict(Verdict.safe), judged=judged)
    piece = repo.get_piece("b1-000")
    assert piece is not None and piece.status is PieceStatus.generated and piece.verdict is None
    with repo.engine.connect() as conn:  # kept in the history (every pass is), applied to nothing
        assert conn.execute(select(ModerationVerdictORM.verdict)).scalars().all() == ["safe"]


def test_each_generation_is_charged_once_however_often_it_is_recorded(repo: Repository) -> None:
    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.add_planned_pieces("b1", planned("b1", range(1)))
    for _ in range(2):  # a retried recording of one generation
        assert repo.charge_generation("b1-000", generation_id="g1", provider="p", amount_usd=0.5) is (_ == 0)
    # The kept image's record names the generation that was already charged.
    repo.mark_generated(
        "b1-000",
        record=make_record(0),
        storage_key="k",
        url="u",
        content_sha256="0" * 64,
        queued_at=T0,
        started_at=T0,
        finished_at=T0,
        generation_seconds=1.0,
        cost_usd=0.5,
        generation_id="g1",
    )
    # A second generation really ran (e.g. its first image was lost before storing): it is paid too.
    assert repo.charge_generation("b1-000", generation_id="g2", provider="p", amount_usd=0.5)
    with repo.engine.connect() as conn:
        keys = conn.execute(select(CostEntryORM.charge_key).order_by(CostEntryORM.id)).scalars().all()
    assert keys == ["image:b1-000:g1", "image:b1-000:g2"]
    assert repo.batch_stats("b1").cost_usd_total == pytest.approx(1.0)
    assert repo.add_cost("b1", kind="text", provider="p", amount_usd=0.1, charge_key="hooks:b1-000:x")
    assert not repo.add_cost("b1", kind="text", provider="p", amount_usd=0.1, charge_key="hooks:b1-000:x")


def test_migration_0005_keeps_every_piece_hook_and_verdict_of_existing_batches(db_url: str) -> None:
    """0005 rebuilds ``batches`` on SQLite; with foreign keys on, that deleted every piece (cascade).

    Reproduced before the fix: pieces after upgrade 0. Now migrations run with foreign keys off on
    SQLite (``migration_transaction``) and the migration refuses to run otherwise.
    """
    engine = make_engine(db_url)
    try:
        with migration_transaction(engine) as conn:
            command.upgrade(alembic_config(conn), "0004_strategy_costs")
        Repository(engine).upsert_persona(make_persona())
        with engine.begin() as conn:  # raw: today's ORM knows columns that revision 0004 lacks
            _raw_batch(conn, "b1", "mia")
            conn.execute(
                text(
                    'INSERT INTO pieces (id, batch_id, persona_id, "index", template_id, template_tier,'
                    " status, prompt, negative_prompt, seed, verdict, created_at, updated_at) VALUES"
                    " ('b1-000', 'b1', 'mia', 0, 'FIT-001', 'safe', 'ready', 'p', '', 1, 'safe',"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO hooks (piece_id, position, style, platform, text, call_to_action, hashtags)"
                    " VALUES ('b1-000', 0, 'question', 'instagram', 'hi', 'go', '[]')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO moderation_verdicts (piece_id, verdict, scores, reasons, backends,"
                    " created_at) VALUES ('b1-000', 'safe', '{}', '[]', '[]', CURRENT_TIMESTAMP)"
                )
            )
            _raw_cost(conn, "b1", kind="image")

        if engine.dialect.name == "sqlite":  # the unsafe way is refused, not silently destructive
            with pytest.raises(RuntimeError, match="foreign keys off"), engine.begin() as conn:
                command.upgrade(alembic_config(conn), "0005_fault_tolerance")
        migrate(db_url)

        with engine.connect() as conn:
            counts = {
                name: conn.execute(text(f"SELECT COUNT(*) FROM {name}")).scalar()
                for name in ("batches", "pieces", "hooks", "moderation_verdicts", "cost_entries")
            }
            assert counts == dict.fromkeys(counts, 1), counts
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1, "enforcement back on"
        piece = Repository(engine).get_piece("b1-000")
        assert piece is not None and [h.text for h in piece.hooks] == ["hi"]
    finally:
        engine.dispose()


def test_a_failed_image_group_leaves_its_recorded_pieces_alone(repo: Repository) -> None:
    repo.upsert_persona(make_persona())
    start_batch(repo)
    repo.add_planned_pieces("b1", planned("b1", range(2)))
    generate(repo, "b1-000", seed=0, sha="0" * 64, cost=0.01)  # stored and recorded first
    assert not repo.mark_failed("b1-000", "the group's third piece failed to store")
    assert repo.mark_failed("b1-001", "the group's third piece failed to store")
    statuses = {p.id: p.status for p in repo.pieces(batch_id="b1")}
    assert statuses == {"b1-000": PieceStatus.generated, "b1-001": PieceStatus.failed}


def test_a_hook_reconciles_only_its_own_batch(repo: Repository) -> None:
    repo.upsert_persona(make_persona())
    for batch_id in ("mine", "late-renewer"):
        start_batch(repo, batch_id)
        repo.acquire_batch_lease(batch_id, f"runner-{batch_id}", ttl_s=-1)
    assert repo.reconcile_expired_batches("mine") == ["mine"]
    status = {b.id: b.status for b in repo.latest_batches()}
    assert status["mine"] == "crashed"
    assert repo.renew_batch_lease("late-renewer", "runner-late-renewer", 60), "still its runner's"
