"""Model registry: base models and LoRAs installed from hubs or local files (issue 16).

Revision ID: 0008_model_registry
Revises: 0007_analytics
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0008_model_registry"
down_revision: str | None = "0007_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Reserved in the revision chain; filled by the work that needs it."""


def downgrade() -> None:
    """Reserved in the revision chain; filled by the work that needs it."""
