"""Analytics: metric snapshots per publication and per account (issue 15).

Revision ID: 0007_analytics
Revises: 0006_piece_prompt_sources
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0007_analytics"
down_revision: str | None = "0006_piece_prompt_sources"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Reserved in the revision chain; filled by the work that needs it."""


def downgrade() -> None:
    """Reserved in the revision chain; filled by the work that needs it."""
