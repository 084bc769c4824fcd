"""Persona conversations: ``conversations`` and ``chat_messages`` (issue 17).

New tables only, so nothing existing is rebuilt on SQLite. The two unique constraints of
``chat_messages`` are the channel guarantees (see ``contentforge.db.models_chat``): a redelivered
webhook stores nothing twice, and an inbound message gets at most one automated reply.

Revision ID: 0009_conversations
Revises: 0008_model_registry
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_conversations"
down_revision: str | None = "0008_model_registry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("persona_id", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("thread_id", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("disclosed", sa.Boolean(), nullable=False),
        sa.Column("disclosed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("platform IN ('instagram', 'x', 'api')", name=op.f("ck_conversations_platform")),
        sa.CheckConstraint("state IN ('auto', 'human', 'closed')", name=op.f("ck_conversations_state")),
        sa.ForeignKeyConstraint(
            ["persona_id"],
            ["personas.id"],
            name=op.f("fk_conversations_persona_id_personas"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        sa.UniqueConstraint(
            "persona_id", "platform", "user_id", name=op.f("uq_conversations_persona_id_platform_user_id")
        ),
    )
    op.create_index(
        op.f("ix_conversations_state_updated_at"), "conversations", ["state", "updated_at"], unique=False
    )
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("platform_message_id", sa.String(length=200), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reply_to_id", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=True),
        sa.Column("author", sa.String(length=120), nullable=True),
        sa.Column("disclosure", sa.Boolean(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("generation", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("direction IN ('inbound', 'outbound')", name=op.f("ck_chat_messages_direction")),
        sa.CheckConstraint(
            "status IN ('received', 'answered', 'held', 'ignored', 'pending', 'sent', 'failed')",
            name=op.f("ck_chat_messages_status"),
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_chat_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
        sa.UniqueConstraint(
            "platform", "platform_message_id", name=op.f("uq_chat_messages_platform_platform_message_id")
        ),
        sa.UniqueConstraint("reply_to_id", name=op.f("uq_chat_messages_reply_to_id")),
    )
    op.create_index(
        op.f("ix_chat_messages_conversation_id_created_at"),
        "chat_messages",
        ["conversation_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_chat_messages_conversation_id_created_at"), table_name="chat_messages")
    op.drop_table("chat_messages")
    op.drop_index(op.f("ix_conversations_state_updated_at"), table_name="conversations")
    op.drop_table("conversations")
