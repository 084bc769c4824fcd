"""Persona conversations: conversations and messages (issue 17).

Revision ID: 0009_conversations
Revises: 0008_model_registry
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0009_conversations"
down_revision: str | None = "0008_model_registry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Reserved in the revision chain; filled by the work that needs it."""


def downgrade() -> None:
    """Reserved in the revision chain; filled by the work that needs it."""
