"""Strategy steps in the cost ledger: ``cost_entries.batch_id`` becomes optional.

Brand research, persona proposals, topic plans, blog posts and social posts call models outside any
batch, so their charges could not be recorded while ``batch_id`` was required. A charge is now either
a batch's (``batch_id``) or a strategy step's (``step``, checked by ``ck_cost_entries_attributed``),
and a step's charge says what it was for in ``brand_id``, ``persona_id`` and ``subject_id``.

Downgrading deletes the strategy charges: revision 0003 has nowhere to keep a charge without a batch.

Revision ID: 0004_strategy_costs
Revises: 0003_strategy
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_strategy_costs"
down_revision: str | None = "0003_strategy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STEPS = (
    "step IS NULL OR step IN "
    "('research_brand', 'propose_personas', 'plan_topics', 'write_blog_post', 'derive_social_posts')"
)
ATTRIBUTED = "batch_id IS NOT NULL OR step IS NOT NULL"
NEW_COLUMNS = (("step", 32), ("brand_id", 64), ("persona_id", 64), ("subject_id", 120))


def upgrade() -> None:
    # batch mode: SQLite cannot drop NOT NULL or add a constraint in place, so the table is rebuilt there.
    with op.batch_alter_table("cost_entries", recreate="auto") as batch:
        batch.alter_column("batch_id", existing_type=sa.String(length=64), nullable=True)
        for name, length in NEW_COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length=length), nullable=True))
        batch.create_check_constraint(op.f("ck_cost_entries_attributed"), ATTRIBUTED)
        batch.create_check_constraint(op.f("ck_cost_entries_step"), STEPS)
        batch.create_index(op.f("ix_cost_entries_persona_id"), ["persona_id"], unique=False)
        batch.create_index(op.f("ix_cost_entries_brand_id"), ["brand_id"], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM cost_entries WHERE batch_id IS NULL")
    with op.batch_alter_table("cost_entries", recreate="auto") as batch:
        batch.drop_index(op.f("ix_cost_entries_brand_id"))
        batch.drop_index(op.f("ix_cost_entries_persona_id"))
        batch.drop_constraint(op.f("ck_cost_entries_step"), type_="check")
        batch.drop_constraint(op.f("ck_cost_entries_attributed"), type_="check")
        for name, _ in reversed(NEW_COLUMNS):
            batch.drop_column(name)
        batch.alter_column("batch_id", existing_type=sa.String(length=64), nullable=False)
