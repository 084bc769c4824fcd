"""ORM table of generation claims (issue 18): which process generates a piece now, until when.

One row per piece being generated: the claimant's description (``owner``, for people and logs), the
``token`` of the one claim that holds it (a process may hold several runs' claims at once), and when the
lease runs out unless renewed. ``contentforge.db.generation_claims`` takes, renews and releases rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from contentforge.db.models import Base


class GenerationClaimORM(Base):
    __tablename__ = "generation_claims"
    __table_args__ = (Index(None, "token"),)  # renewals and releases go by token

    piece_id: Mapped[str] = mapped_column(ForeignKey("pieces.id", ondelete="CASCADE"), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column()
