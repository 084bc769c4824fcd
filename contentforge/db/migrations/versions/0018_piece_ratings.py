"""People's 1-5 ratings of pieces in a table of their own (issue 16): one row per piece and rater.

The first version kept who rated what in the batch's ``params`` JSON: any other writer of that JSON
(saving an AUTO batch's plans) could overwrite a claim made meanwhile, and the rater key included the
free-text reviewer name a caller sends, so one token could rate a piece many times. The primary key
``(piece_id, rater)`` makes a rating count once without a lock on the batch row. Claims kept in
``batches.params["ratings"]`` are copied over, keyed by what they were keyed by then.

Revision ID: 0018_piece_ratings
Revises: 0017_read_paths
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0018_piece_ratings"
down_revision: str | None = "0017_read_paths"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    ratings = op.create_table(
        "piece_ratings",
        sa.Column("piece_id", sa.String(length=64), nullable=False),
        sa.Column("rater", sa.String(length=200), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_piece_ratings_rating")),
        sa.ForeignKeyConstraint(
            ["piece_id"], ["pieces.id"], name=op.f("fk_piece_ratings_piece_id_pieces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("piece_id", "rater", name=op.f("pk_piece_ratings")),
    )
    batches = sa.table("batches", sa.column("params", sa.JSON()))
    pieces = sa.table("pieces", sa.column("id", sa.String()))
    connection = op.get_bind()
    carried = [
        claims
        for (params,) in connection.execute(sa.select(batches.c.params))
        if (claims := (params or {}).get("ratings"))
    ]
    if not carried:
        return  # nothing to carry over: no need to read every piece id
    # Claims of pieces deleted since are dropped (the foreign key would refuse them).
    known = set(connection.execute(sa.select(pieces.c.id)).scalars())
    now = datetime.now(UTC)
    rows = []
    for claims in carried:
        for piece_id, by_rater in claims.items():
            if piece_id in known:
                rows += [
                    {
                        "piece_id": piece_id,
                        "rater": rater[:200],
                        "rating": int(rating),
                        "display_name": "",
                        "created_at": now,
                    }
                    for rater, rating in by_rater.items()
                    if 1 <= int(rating) <= 5
                ]
    if rows:
        op.bulk_insert(ratings, rows)


def downgrade() -> None:
    op.drop_table("piece_ratings")
