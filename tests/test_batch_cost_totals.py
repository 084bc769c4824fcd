"""``batch_cost_totals`` (migration 0022): each batch's cost per kind, kept by triggers on the ledger.

The reads of a batch's and a persona's statistics add up these rows instead of every cost entry, so
the rows must always be exactly what the entries sum to: after keyed charges (a repeated key adds
nothing), unkeyed ones, the legacy charge key whose amount is replaced, a deleted entry, a deleted
batch, and charges written by two runners at once; and a database migrated from 0021 starts with the
totals of the entries it already had. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, text

from contentforge.db import Repository, make_engine
from contentforge.db.costs import charge
from contentforge.db.engine import alembic_config, migration_transaction
from contentforge.db.models import BatchCostTotalORM, BatchORM, CostEntryORM
from contentforge.personas import sample_persona


def _totals(engine: Engine) -> dict[tuple[str, str], float]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(BatchCostTotalORM.batch_id, BatchCostTotalORM.kind, BatchCostTotalORM.amount_usd)
        )
        return {(batch_id, kind): amount for batch_id, kind, amount in rows}


def _sums(engine: Engine) -> dict[tuple[str, str], float]:
    """What the entries add up to, per (batch, kind), in Python."""
    sums: dict[tuple[str, str], float] = defaultdict(float)
    with engine.connect() as conn:
        for batch_id, kind, amount in conn.execute(
            select(CostEntryORM.batch_id, CostEntryORM.kind, CostEntryORM.amount_usd).where(
                CostEntryORM.batch_id.is_not(None)
            )
        ):
            sums[(batch_id, kind)] += amount
    return dict(sums)


def _assert_kept(engine: Engine) -> None:
    totals, sums = _totals(engine), _sums(engine)
    assert set(sums) <= set(totals)
    for key, amount in totals.items():
        assert amount == pytest.approx(sums.get(key, 0.0), abs=1e-12), key


def _batch(repo: Repository, batch_id: str) -> None:
    repo.create_batch(
        batch_id=batch_id,
        persona_id="mia",
        platform="instagram",
        num_pieces=2,
        tier_mix={"safe": 1.0},
        seed=1,
        params={},
        flow_run_id=None,
    )


@pytest.fixture
def repo(migrated_engine: Engine) -> Repository:
    repo = Repository(migrated_engine)
    repo.upsert_persona(sample_persona().model_copy(update={"id": "mia"}))
    _batch(repo, "b1")
    _batch(repo, "b2")
    return repo


def test_charges_keep_each_batch_total_per_kind(repo: Repository, migrated_engine: Engine) -> None:
    assert repo.add_cost("b1", kind="text", provider="p", amount_usd=0.25, charge_key="call-1")
    assert not repo.add_cost("b1", kind="text", provider="p", amount_usd=0.25, charge_key="call-1")
    assert repo.add_cost("b1", kind="text", provider="p", amount_usd=0.5)  # unkeyed
    assert repo.add_cost("b1", kind="moderation", provider="p", amount_usd=0.125, charge_key="m-1")
    assert repo.add_cost("b2", kind="text", provider="p", amount_usd=1.0, charge_key="call-2")
    repo.add_strategy_cost("plan_topics", provider="p", amount_usd=3.0, persona_id="mia")  # no batch
    assert _totals(migrated_engine) == {
        ("b1", "text"): 0.75,
        ("b1", "moderation"): 0.125,
        ("b2", "text"): 1.0,
    }
    stats = repo.batch_stats("b1")
    assert stats.cost_usd_by_kind["text"] == 0.75 and stats.cost_usd_by_kind["moderation"] == 0.125
    assert stats.cost_usd_total == 0.875
    _assert_kept(migrated_engine)


def test_a_replaced_amount_and_deleted_entries_and_batches_are_recounted(
    repo: Repository, migrated_engine: Engine
) -> None:
    for n in range(3):
        repo.add_cost("b1", kind="image", provider="p", amount_usd=0.1 * (n + 1), charge_key=f"img-{n}")
    repo.add_cost("b2", kind="image", provider="p", amount_usd=2.0, charge_key="img-b2")
    with repo.sessions.write() as session:  # the legacy key's path: ON CONFLICT DO UPDATE of the amount
        values: dict[str, Any] = {"batch_id": "b1", "kind": "image", "provider": "p", "amount_usd": 0.05}
        charge(session, "img-0", update_amount=True, **values)
    _assert_kept(migrated_engine)
    assert _totals(migrated_engine)[("b1", "image")] == pytest.approx(0.05 + 0.2 + 0.3)

    with repo.sessions.write() as session:
        session.execute(delete(CostEntryORM).where(CostEntryORM.charge_key == "img-1"))
    _assert_kept(migrated_engine)
    assert _totals(migrated_engine)[("b1", "image")] == pytest.approx(0.05 + 0.3)

    with repo.sessions.write() as session:  # an entry moved to another batch counts there
        session.execute(
            CostEntryORM.__table__.update().where(CostEntryORM.charge_key == "img-2").values(batch_id="b2")
        )
    _assert_kept(migrated_engine)
    assert _totals(migrated_engine)[("b2", "image")] == pytest.approx(2.3)

    with repo.sessions.write() as session:
        session.execute(delete(BatchORM).where(BatchORM.id == "b2"))
    assert ("b2", "image") not in _totals(migrated_engine)
    _assert_kept(migrated_engine)


def test_two_runners_charging_one_batch_at_once_lose_no_amount(
    repo: Repository, migrated_engine: Engine
) -> None:
    """Each charge is its own short transaction from its own thread, as a batch's generation threads
    and a second runner charge: the total is every amount once."""

    def charge_once(n: int) -> bool:
        return repo.add_cost(
            "b1", kind="image", provider="p", amount_usd=0.01 * (n % 40 % 7 + 1), charge_key=f"c{n % 40}"
        )

    with ThreadPoolExecutor(8) as pool:
        added = list(pool.map(charge_once, range(80)))  # every key twice: the second of each adds nothing
    assert sum(added) == 40
    expected = sum(0.01 * (n % 7 + 1) for n in range(40))
    assert _totals(migrated_engine)[("b1", "image")] == pytest.approx(expected)
    _assert_kept(migrated_engine)


def test_migrating_from_0021_counts_the_entries_already_there(db_url_0021: str) -> None:
    engine = make_engine(db_url_0021)
    try:
        with engine.begin() as conn:  # raw rows, as a database at revision 0021 holds them
            conn.execute(
                text(
                    "INSERT INTO batches (id, persona_id, platform, num_pieces, tier_mix, seed, params,"
                    " status, started_at) VALUES ('old', 'mia', 'instagram', 4, '{}', 42, '{}',"
                    " 'completed', CURRENT_TIMESTAMP)"
                )
            )
            for kind, amount in [("image", 0.5), ("image", 0.25), ("text", 0.125)]:
                conn.execute(
                    text(
                        "INSERT INTO cost_entries (batch_id, kind, provider, amount_usd, created_at)"
                        " VALUES ('old', :kind, 'p', :amount, CURRENT_TIMESTAMP)"
                    ),
                    {"kind": kind, "amount": amount},
                )
        with migration_transaction(engine) as conn:
            from alembic import command

            command.upgrade(alembic_config(conn), "head")
        assert _totals(engine) == {("old", "image"): 0.75, ("old", "text"): 0.125}
        Repository(engine).add_cost("old", kind="text", provider="p", amount_usd=1.0)
        assert _totals(engine)[("old", "text")] == 1.125
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url_0021(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A database migrated to revision 0021 (before the totals), with the persona ``mia``."""
    from alembic import command

    url = (
        f"sqlite:///{tmp_path / 'old.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    )
    engine = make_engine(url)
    try:
        with migration_transaction(engine) as conn:
            command.upgrade(alembic_config(conn), "0021_slot_offers")
        Repository(engine).upsert_persona(sample_persona().model_copy(update={"id": "mia"}))
    finally:
        engine.dispose()
    return url
