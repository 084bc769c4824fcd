"""Quality gate verdicts: ``hooks.quality_gate`` and ``pieces.prompt_quality_gate`` (JSON, nullable).

Every batch hook and every image prompt now passes the quality gate (``contentforge.quality``); its
verdict is stored with the text it judged, so the gallery and the review form can show it and
publishing can leave out a hook marked ``needs_review``. Rows written before this revision have no
verdict (NULL: not gated). Only columns are added and dropped (SQLite's own ``ALTER TABLE``), never a
table rebuilt: rebuilding ``pieces`` would drop it, and with foreign keys on, that deletes its hooks,
verdicts and publications with it (see revision 0006).

Revision ID: 0013_hook_quality_gate
Revises: 0012_api_request_costs
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_hook_quality_gate"
down_revision: str | None = "0012_api_request_costs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hooks", sa.Column("quality_gate", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("pieces", sa.Column("prompt_quality_gate", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    op.drop_column("pieces", "prompt_quality_gate")
    op.drop_column("hooks", "quality_gate")
