"""Each batch's cost per kind, kept by the database as cost entries are written (issue 18).

A persona's statistics summed every cost entry of its batches on each request: at 100,000 pieces,
about 5,900 entries and 2.7 ms of PostgreSQL time per persona, the largest part of the stats
endpoint's time in the database. ``batch_cost_totals`` holds one row per (batch, kind), so those
reads add up about 160 rows.

Triggers keep it, so no write path can forget to (the ledger's keyed charges, plain inserts, the
benchmark seeder's bulk inserts, cascades): an insert adds its amount (a charge skipped by
``ON CONFLICT DO NOTHING`` fires no insert trigger); an update or delete, which only a legacy
charge key and deletions make, recounts its (batch, kind) from the entries. The totals row of a
deleted batch goes with it (cascade). A later migration that rebuilds ``cost_entries`` (SQLite's
batch mode copies the table) must create these triggers again; ``tests/test_batch_cost_totals.py``
fails at head if they are missing.

Revision ID: 0022_batch_cost_totals
Revises: 0021_slot_offers
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_batch_cost_totals"
down_revision: str | None = "0021_slot_offers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RECOUNT_OLD = """
    UPDATE batch_cost_totals
    SET amount_usd = (SELECT COALESCE(SUM(amount_usd), 0) FROM cost_entries
                      WHERE batch_id = OLD.batch_id AND kind = OLD.kind)
    WHERE batch_id = OLD.batch_id AND kind = OLD.kind;
"""
_RECOUNT_NEW = """
    INSERT INTO batch_cost_totals (batch_id, kind, amount_usd)
    SELECT NEW.batch_id, NEW.kind, (SELECT COALESCE(SUM(amount_usd), 0) FROM cost_entries
                                    WHERE batch_id = NEW.batch_id AND kind = NEW.kind)
    WHERE NEW.batch_id IS NOT NULL
    ON CONFLICT (batch_id, kind) DO UPDATE SET amount_usd = excluded.amount_usd;
"""
_ADD_NEW = """
    INSERT INTO batch_cost_totals (batch_id, kind, amount_usd)
    VALUES (NEW.batch_id, NEW.kind, NEW.amount_usd)
    ON CONFLICT (batch_id, kind)
    DO UPDATE SET amount_usd = batch_cost_totals.amount_usd + excluded.amount_usd;
"""

TRIGGERS = {
    "sqlite": [
        f"""CREATE TRIGGER cost_entries_totals_insert AFTER INSERT ON cost_entries
        WHEN NEW.batch_id IS NOT NULL BEGIN {_ADD_NEW} END""",
        f"""CREATE TRIGGER cost_entries_totals_update AFTER UPDATE OF batch_id, kind, amount_usd
        ON cost_entries BEGIN {_RECOUNT_OLD} {_RECOUNT_NEW} END""",
        f"""CREATE TRIGGER cost_entries_totals_delete AFTER DELETE ON cost_entries
        WHEN OLD.batch_id IS NOT NULL BEGIN {_RECOUNT_OLD} END""",
    ],
    "postgresql": [
        # SET search_path FROM CURRENT: the tables of the schema the function was made in, whatever
        # the search path of the session that writes an entry.
        f"""CREATE FUNCTION cost_entries_totals() RETURNS trigger LANGUAGE plpgsql
        SET search_path FROM CURRENT AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                IF NEW.batch_id IS NOT NULL THEN {_ADD_NEW} END IF;
                RETURN NULL;
            END IF;
            IF OLD.batch_id IS NOT NULL THEN {_RECOUNT_OLD} END IF;
            IF TG_OP = 'UPDATE' THEN {_RECOUNT_NEW} END IF;
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER cost_entries_totals AFTER INSERT OR UPDATE OR DELETE ON cost_entries
        FOR EACH ROW EXECUTE FUNCTION cost_entries_totals()""",
    ],
}
DROPS = {
    "sqlite": [
        "DROP TRIGGER IF EXISTS cost_entries_totals_insert",
        "DROP TRIGGER IF EXISTS cost_entries_totals_update",
        "DROP TRIGGER IF EXISTS cost_entries_totals_delete",
    ],
    "postgresql": [
        "DROP TRIGGER IF EXISTS cost_entries_totals ON cost_entries",
        "DROP FUNCTION IF EXISTS cost_entries_totals()",
    ],
}


def upgrade() -> None:
    op.create_table(
        "batch_cost_totals",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_usd", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.id"],
            name=op.f("fk_batch_cost_totals_batch_id_batches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("batch_id", "kind", name=op.f("pk_batch_cost_totals")),
    )
    for statement in TRIGGERS[op.get_bind().dialect.name]:
        op.execute(statement)
    op.execute(
        "INSERT INTO batch_cost_totals (batch_id, kind, amount_usd) SELECT batch_id, kind, SUM(amount_usd) "
        "FROM cost_entries WHERE batch_id IS NOT NULL GROUP BY batch_id, kind"
    )


def downgrade() -> None:
    for statement in DROPS[op.get_bind().dialect.name]:
        op.execute(statement)
    op.drop_table("batch_cost_totals")
