"""Prompt sources on the piece: ``pieces.prompt_source`` and ``pieces.prompt_fallback``.

Where a piece's image prompt came from (``llm`` or ``rules``) and why a model prompt fell back to
the rules were kept in the batch's ``params`` JSON (``prompt_sources`` and ``prompt_fallbacks``, piece
id to value), unlike every other fact about a piece. Upgrading moves them onto the pieces and out of
``params``; downgrading moves them back. Only columns are added and dropped (SQLite's own
``ALTER TABLE``), never a table rebuilt: rebuilding ``pieces`` would drop it, and with foreign keys
on, that deletes its hooks, verdicts and publications with it.

Revision ID: 0006_piece_prompt_sources
Revises: 0005_fault_tolerance
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006_piece_prompt_sources"
down_revision: str | None = "0005_fault_tolerance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES, FALLBACKS = "prompt_sources", "prompt_fallbacks"

batches = sa.table("batches", sa.column("id", sa.String), sa.column("params", sa.JSON))
pieces = sa.table(
    "pieces",
    sa.column("id", sa.String),
    sa.column("batch_id", sa.String),
    sa.column("prompt_source", sa.String),
    sa.column("prompt_fallback", sa.Text),
)


def upgrade() -> None:
    op.add_column("pieces", sa.Column("prompt_source", sa.String(length=8), nullable=True))
    op.add_column("pieces", sa.Column("prompt_fallback", sa.Text(), nullable=True))
    conn = op.get_bind()
    for batch_id, params in conn.execute(sa.select(batches.c.id, batches.c.params)).all():
        params = dict(params or {})
        if SOURCES not in params and FALLBACKS not in params:
            continue
        sources: dict[str, Any] = dict(params.pop(SOURCES, None) or {})
        fallbacks: dict[str, Any] = dict(params.pop(FALLBACKS, None) or {})
        for piece_id in sorted(set(sources) | set(fallbacks)):
            conn.execute(
                pieces.update()
                .where(pieces.c.id == piece_id, pieces.c.batch_id == batch_id)
                .values(prompt_source=sources.get(piece_id), prompt_fallback=fallbacks.get(piece_id))
            )
        conn.execute(batches.update().where(batches.c.id == batch_id).values(params=params))


def downgrade() -> None:
    conn = op.get_bind()
    moved: dict[str, dict[str, dict[str, str]]] = {}
    for batch_id, piece_id, source, fallback in conn.execute(
        sa.select(pieces.c.batch_id, pieces.c.id, pieces.c.prompt_source, pieces.c.prompt_fallback)
        .where(sa.or_(pieces.c.prompt_source.is_not(None), pieces.c.prompt_fallback.is_not(None)))
        .order_by(pieces.c.batch_id, pieces.c.id)
    ).all():
        batch = moved.setdefault(batch_id, {SOURCES: {}, FALLBACKS: {}})
        if source is not None:
            batch[SOURCES][piece_id] = source
        if fallback is not None:
            batch[FALLBACKS][piece_id] = fallback
    for batch_id, found in moved.items():
        params = conn.execute(sa.select(batches.c.params).where(batches.c.id == batch_id)).scalar_one()
        params = dict(params or {})
        for key, values in found.items():
            if values:
                params[key] = dict(params.get(key) or {}) | values
        conn.execute(batches.update().where(batches.c.id == batch_id).values(params=params))
    op.drop_column("pieces", "prompt_fallback")
    op.drop_column("pieces", "prompt_source")
