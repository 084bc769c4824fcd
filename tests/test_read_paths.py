"""The API's read queries (issue 18's flat read paths) give what a plain reading of the rows gives.

``ContentQueries`` answers with one grouped scan, window counts and unions instead of one query per
figure; these tests hold its answers to a reference computed in Python from every row, on SQLite
and PostgreSQL, over a small history from the benchmark's own seeder plus the awkward cases the
seeder never makes: two batches started at the same instant, hooks on two platforms, a batch
without pieces, strategy costs that belong to no batch, pages past the end, unknown ids.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import create_engine, select, update
from sqlalchemy.engine import make_url

from contentforge.db import Repository
from contentforge.db.models import BatchORM, CostEntryORM, HookORM, PieceORM
from contentforge_api.json_answers import json_answer
from contentforge_api.queries import ContentQueries
from contentforge_api.schemas import BatchGalleryOut, BatchOut, ContentPage, PieceOut

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from seed_pieces import seed

TIE = datetime(2026, 1, 1, 3, tzinfo=UTC)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repository]:
    """One seeded database per backend for the whole module: the tests only read it."""
    if request.param == "sqlite":
        yield _seeded(f"sqlite:///{tmp_path_factory.mktemp('reads') / 'r.db'}")
        return
    database = make_url(request.getfixturevalue("pg_database"))
    with create_engine(database, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.exec_driver_sql("CREATE SCHEMA read_paths")
    try:
        in_schema = database.update_query_dict({"options": "-csearch_path=read_paths"})
        repo = _seeded(in_schema.render_as_string(hide_password=False))
        yield repo
        repo.sessions.engine.dispose()
    finally:
        with create_engine(database, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.exec_driver_sql("DROP SCHEMA read_paths CASCADE")


def _seeded(url: str) -> Repository:
    seed(url, personas=2, batches=8, pieces=48)
    repo = Repository.open(url)
    with repo.sessions.write() as session:
        # bench000003 and bench000005 (both persona bench-001) start together: ordered by id.
        session.execute(
            update(BatchORM).where(BatchORM.id.in_(["bench000003", "bench000005"])).values(started_at=TIE)
        )
        # An AUTO batch keeps what its mode chose per piece in its params (contentforge.db.piece_plans).
        session.execute(
            update(BatchORM)
            .where(BatchORM.id == "bench000002")
            .values(params={"mode": "auto", "decisions": {"bench000002-001": "AUTO chose a LoRA"}})
        )
        session.add(
            HookORM(
                piece_id="bench000001-000",
                position=0,
                style="question",
                platform="x",
                text="on x",
                call_to_action="",
                hashtags=["one", "two"],
            )
        )
        session.add(
            CostEntryORM(
                step="plan_topics",
                persona_id="bench-001",
                kind="text",
                provider="test",
                amount_usd=0.25,
                charge_key="test:topics",
            )
        )
    repo.create_batch(
        batch_id="empty-batch",
        persona_id="bench-000",
        platform="x",
        num_pieces=3,
        tier_mix={"safe": 1.0},
        seed=1,
        params={},
        flow_run_id=None,
    )
    return repo


def _queries(repo: Repository) -> ContentQueries:
    return ContentQueries(repo.sessions, lambda row: row.storage_key and f"/content/{row.storage_key}")


def _everything(repo: Repository) -> dict[str, Any]:
    with repo.sessions.read() as session:
        batches = {b.id: b for b in session.scalars(select(BatchORM))}
        pieces = list(session.scalars(select(PieceORM)))
        hooks = list(session.scalars(select(HookORM)))
        costs = list(session.scalars(select(CostEntryORM)))
        session.expunge_all()
    return {"batches": batches, "pieces": pieces, "hooks": hooks, "costs": costs}


def _expected_page(rows: dict[str, Any], persona_id: str, **match: str) -> list[str]:
    batches = rows["batches"]
    chosen = [
        p
        for p in rows["pieces"]
        if p.persona_id == persona_id
        and all(
            (batches[p.batch_id].platform if k == "platform" else getattr(p, k)) == v
            for k, v in match.items()
        )
    ]
    chosen.sort(key=lambda p: (-batches[p.batch_id].started_at.timestamp(), p.batch_id, p.index))
    return [p.id for p in chosen]


@pytest.mark.parametrize(
    "match",
    [{}, {"tier": "safe"}, {"status": "ready"}, {"platform": "tiktok"}, {"status": "failed", "tier": "safe"}],
)
def test_content_pages_are_the_rows_in_order_with_the_total(
    seeded: Repository, match: dict[str, str]
) -> None:
    rows, queries = _everything(seeded), _queries(seeded)
    expected = _expected_page(rows, "bench-001", **match)
    seen: list[str] = []
    for offset in range(0, len(expected) + 10, 7):
        found = queries.persona_content("bench-001", limit=7, offset=offset, **match)
        assert found is not None
        total, items = found
        assert total == len(expected)
        seen += [item["id"] for item in items]
    assert seen == expected


def test_a_page_carries_each_pieces_hooks_cost_and_platform(seeded: Repository) -> None:
    rows, queries = _everything(seeded), _queries(seeded)
    found = queries.persona_content("bench-000", limit=200)
    assert found is not None
    by_id = {p.id: p for p in rows["pieces"]}
    for item in found[1]:
        piece = by_id[item["id"]]
        assert item["platform"] == rows["batches"][piece.batch_id].platform
        assert item["image_url"] == (piece.storage_key and f"/content/{piece.storage_key}")
        assert item["cost_usd_total"] == pytest.approx(
            sum(c.amount_usd for c in rows["costs"] if c.piece_id == piece.id)
        )
        hooks = sorted(
            (h for h in rows["hooks"] if h.piece_id == piece.id), key=lambda h: (h.platform, h.position)
        )
        assert [(h["platform"], h["text"]) for h in item["hooks"]] == [(h.platform, h.text) for h in hooks]
    two_platforms = queries.piece("bench000001-000")
    assert two_platforms is not None
    assert [h["platform"] for h in two_platforms["hooks"]][-1] == "x"
    assert two_platforms["hooks"][-1]["caption"] == "on x\n\n#one #two"


def test_unknown_persona_batch_and_empty_pages(seeded: Repository) -> None:
    queries = _queries(seeded)
    assert queries.persona_content("nobody") is None
    assert queries.persona_stats("nobody") is None
    assert queries.persona_content("bench-000", status="planned") == (0, [])
    assert queries.persona_content("bench-000", offset=10_000) == (
        len(_expected_page(_everything(seeded), "bench-000")),
        [],
    )
    assert queries.batch_pieces("no-such-batch") is None
    assert queries.batch_with_stats("no-such-batch") is None
    assert queries.batch_pieces("empty-batch") == []


def test_batch_pieces_and_stats_match_the_rows(seeded: Repository) -> None:
    rows, queries = _everything(seeded), _queries(seeded)
    for batch_id in ("bench000002", "empty-batch"):
        mine = [p for p in rows["pieces"] if p.batch_id == batch_id]
        listed = queries.batch_pieces(batch_id)
        assert listed is not None and [p["id"] for p in listed] == [
            p.id for p in sorted(mine, key=lambda p: p.index)
        ]
        found = queries.batch_with_stats(batch_id)
        assert found is not None
        stats = found["stats"]
        assert stats == seeded.batch_stats(batch_id)
        assert stats.by_status == {s: 0 for s in stats.by_status} | dict(Counter(p.status for p in mine))
        assert stats.by_verdict == dict(Counter(p.verdict for p in mine if p.verdict))
        assert stats.by_tier == dict(Counter(p.tier for p in mine if p.tier))
        assert stats.generated == sum(1 for p in mine if p.content_sha256)
        assert stats.hooks == sum(1 for h in rows["hooks"] if h.piece_id in {p.id for p in mine})
        seconds = [p.generation_seconds for p in mine if p.generation_seconds is not None]
        assert stats.generation_seconds_mean == (
            pytest.approx(sum(seconds) / len(seconds)) if seconds else None
        )
        charged = [c for c in rows["costs"] if c.batch_id == batch_id]
        for kind, total in stats.cost_usd_by_kind.items():
            assert total == pytest.approx(sum(c.amount_usd for c in charged if c.kind == kind))


def test_the_gallery_read_is_the_batch_and_its_pieces_with_their_decisions(seeded: Repository) -> None:
    """``GET /batches/{id}/gallery``'s query: the batch read and the pieces read in one answer, the
    AUTO batch's decision on its piece, written byte for byte as ``BatchGalleryOut`` writes it."""
    queries = _queries(seeded)
    for batch_id in ("bench000002", "bench000003", "empty-batch"):
        gallery = queries.batch_gallery(batch_id)
        assert gallery == {
            "batch": queries.batch_with_stats(batch_id),
            "pieces": queries.batch_pieces(batch_id),
        }
        assert gallery["batch"]["stats"].pieces == len(gallery["pieces"])
        sent = json_answer({"batch": BatchOut(**gallery["batch"]), "pieces": gallery["pieces"]}).body
        assert sent == BatchGalleryOut.model_validate(gallery).model_dump_json().encode()
    decided = queries.batch_pieces("bench000002")
    assert decided is not None
    assert {p["id"]: p["decision"] for p in decided if p["decision"]} == {
        "bench000002-001": "AUTO chose a LoRA"
    }
    assert all(p["decision"] is None for p in queries.batch_pieces("bench000003") or [])
    one = queries.piece("bench000002-001")  # a piece's own page reads its decision with it
    assert one is not None and one["decision"] == "AUTO chose a LoRA"
    assert one == next(p for p in decided if p["id"] == "bench000002-001") | {"variation_ids": []}
    assert (queries.piece("bench000002-000") or {})["decision"] is None
    assert queries.batch_gallery("no-such-batch") is None


def test_persona_stats_match_the_rows(seeded: Repository) -> None:
    rows, queries = _everything(seeded), _queries(seeded)
    stats = queries.persona_stats("bench-001")
    assert stats is not None
    batches = {i: b for i, b in rows["batches"].items() if b.persona_id == "bench-001"}
    mine = [p for p in rows["pieces"] if p.persona_id == "bench-001"]
    assert stats["batches"] == len(batches)
    assert stats["latest_batch_id"] == max(batches.values(), key=lambda b: (b.started_at, b.id)).id
    assert stats["pieces"] == len(mine)
    assert {k: v for k, v in stats["by_status"].items() if v} == dict(Counter(p.status for p in mine))
    assert stats["by_tier"] == dict(Counter(p.tier for p in mine if p.tier))
    assert stats["by_platform"] == dict(Counter(batches[p.batch_id].platform for p in mine))
    assert stats["generated"] == sum(1 for p in mine if p.content_sha256)
    seconds = [p.generation_seconds for p in mine if p.generation_seconds is not None]
    assert stats["generation_seconds_mean"] == pytest.approx(sum(seconds) / len(seconds))
    charged = [c for c in rows["costs"] if c.batch_id in batches]
    for kind, total in stats["cost_usd_by_kind"].items():
        assert total == pytest.approx(sum(c.amount_usd for c in charged if c.kind == kind))
    assert stats["strategy_cost_usd_by_step"] == {"plan_topics": pytest.approx(0.25)}
    assert stats["cost_usd_total"] == pytest.approx(sum(c.amount_usd for c in charged) + 0.25)


def test_pages_and_batch_pieces_are_sent_exactly_as_their_models_write_them(seeded: Repository) -> None:
    """The content page and batch pieces routes skip the response model's validation
    (``json_answers``): their dicts must already be what the model writes, byte for byte: every
    field, in the model's order, of the model's types."""
    queries = _queries(seeded)
    sent_pieces = 0
    for persona_id in ("bench-000", "bench-001"):
        for offset in range(0, 60, 25):
            found = queries.persona_content(persona_id, limit=25, offset=offset)
            assert found is not None
            page = {"total": found[0], "limit": 25, "offset": offset, "items": found[1]}
            assert json_answer(page).body == ContentPage.model_validate(page).model_dump_json().encode()
            sent_pieces += len(found[1])
    for batch_id in ("bench000002", "bench000003", "empty-batch"):
        pieces = queries.batch_pieces(batch_id)
        assert pieces is not None
        decided = [p | {"decision": f"AUTO chose {p['template_id']}"} for p in pieces[:2]] + pieces[2:]
        model = TypeAdapter(list[PieceOut])
        assert json_answer(decided).body == model.dump_json(model.validate_python(decided))
    assert sent_pieces == len(_everything(seeded)["pieces"])  # every piece went through a page
    # What PostgreSQL's float8 and JSON can hold and the seeder never writes: written as the model does.
    first = queries.persona_content("bench-000", limit=1)
    assert first is not None
    odd = first[1][0] | {
        "cost_usd": float("inf"),
        "generation_seconds": float("nan"),
        "moderation_scores": {"nsfw": float("-inf")},
    }
    page = {"total": 1, "limit": 1, "offset": 0, "items": [odd]}
    assert json_answer(page).body == ContentPage.model_validate(page).model_dump_json().encode()
    assert b"NaN" not in json_answer(page).body and b"Infinity" not in json_answer(page).body


def test_the_served_app_leaves_its_start_up_objects_out_of_garbage_collection() -> None:
    """`contentforge api` freezes what start-up built, so a full collection no longer walks ~550k objects.

    In a child process: frozen objects are never freed, which this test process must not suffer.
    """
    import subprocess

    script = (
        "import gc, json\n"
        "from contentforge_api.app import freeze_startup_heap\n"
        "before = len(gc.get_objects())\n"
        "freeze_startup_heap()\n"
        "print(json.dumps([before, len(gc.get_objects()), gc.get_freeze_count()]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    before, after, frozen = json.loads(done.stdout.strip().splitlines()[-1])
    assert before > 100_000, "the API's imports alone leave this many objects to scan"
    assert frozen >= before - 1_000 and after < 1_000
