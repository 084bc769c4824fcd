"""API requests in the cost ledger: ``ck_cost_entries_step`` also accepts ``api_hooks``.

Hooks, hook variations and calls to action written through the API call a model outside any batch
and any strategy step; their charges carry ``step = 'api_hooks'`` (and the persona they were for),
which the step constraint of revision 0004 refused. Only that CHECK constraint changes. On SQLite the
``cost_entries`` table is rebuilt to change it (batch mode); nothing references ``cost_entries``, so
the rebuild cascades to nothing (and migrations run with foreign keys off there anyway).

Downgrading deletes the API request charges: revision 0011 has no step for them.

Revision ID: 0012_api_request_costs
Revises: 0011_dispatch_turns
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012_api_request_costs"
down_revision: str | None = "0011_dispatch_turns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STRATEGY = "'research_brand', 'propose_personas', 'plan_topics', 'write_blog_post', 'derive_social_posts'"
BEFORE = f"step IS NULL OR step IN ({STRATEGY})"
AFTER = f"step IS NULL OR step IN ({STRATEGY}, 'api_hooks')"


def _replace_step_check(condition: str) -> None:
    with op.batch_alter_table("cost_entries", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_cost_entries_step"), type_="check")
        batch.create_check_constraint(op.f("ck_cost_entries_step"), condition)


def upgrade() -> None:
    _replace_step_check(AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM cost_entries WHERE step = 'api_hooks'")
    _replace_step_check(BEFORE)
