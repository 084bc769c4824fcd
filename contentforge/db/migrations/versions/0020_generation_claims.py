"""Generation claims (issue 18, item 1): a per-piece claim with a lease, so a piece is generated once.

Warm GPU workers could generate a piece twice (and store it once): a worker unseen by the Prefect server
after it claimed its run kept generating while the batch sent the same pieces to another worker, and a
resume started while a cancelled batch's run still finished sent them again. A row here says which
process generates the piece now and until when; ``contentforge.db.generation_claims`` says how it is
taken, renewed and released.

Revision ID: 0020_generation_claims
Revises: 0019_piece_cancelled
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_generation_claims"
down_revision: str | None = "0019_piece_cancelled"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "generation_claims",
        sa.Column("piece_id", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["piece_id"], ["pieces.id"], name=op.f("fk_generation_claims_piece_id_pieces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("piece_id", name=op.f("pk_generation_claims")),
    )
    op.create_index(op.f("ix_generation_claims_token"), "generation_claims", ["token"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_generation_claims_token"), table_name="generation_claims")
    op.drop_table("generation_claims")
