"""Indexes that keep the API's reads flat at 100k pieces (issue 18).

Revision ID: 0010_read_indexes
Revises: 0009_conversations
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0010_read_indexes"
down_revision: str | None = "0009_conversations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Reserved in the revision chain; filled by the work that needs it."""


def downgrade() -> None:
    """Reserved in the revision chain; filled by the work that needs it."""
