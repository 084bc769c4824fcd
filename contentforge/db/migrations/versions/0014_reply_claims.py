"""Reply claims as leases: ``chat_messages`` gains the columns that let a dead reply run be taken over.

A reply run used to claim its reply row for ever: killed between the claim and the send, it left
the row ``pending`` and nothing sent the reply. The claim is now a lease (``claim_token``,
``claim_expires_at``), renewed while the run lives, so a rerun or the ``resend-replies`` sweep takes
over an expired one; ``send_started_at`` is written before the platform call, so an expired claim
whose send had begun is left for a person instead of being sent twice; ``judged_sha256`` is the
hash of the exact text moderation judged, checked right before the send; ``send_attempts`` bounds
the retries of refusals the platform calls temporary (429, 5xx). Rows written before this revision
have no claim (NULL): they are never taken over. Only columns are added and dropped (SQLite's own
``ALTER TABLE``), never a table rebuilt (see revision 0006).

Revision ID: 0014_reply_claims
Revises: 0013_hook_quality_gate
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_reply_claims"
down_revision: str | None = "0013_hook_quality_gate"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("claim_token", "claim_expires_at", "send_started_at", "judged_sha256", "send_attempts")


def upgrade() -> None:
    op.add_column("chat_messages", sa.Column("claim_token", sa.String(length=64), nullable=True))
    op.add_column("chat_messages", sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("chat_messages", sa.Column("send_started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("chat_messages", sa.Column("judged_sha256", sa.String(length=64), nullable=True))
    op.add_column(
        "chat_messages", sa.Column("send_attempts", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    for column in reversed(COLUMNS):
        op.drop_column("chat_messages", column)
