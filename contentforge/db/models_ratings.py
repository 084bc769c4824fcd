"""ORM table of people's 1-5 ratings of generated pieces (issue 16; revision 0018).

One row per (piece, rater): the primary key is what makes a rating count once, however often it is
sent and from however many API processes. ``contentforge.db.piece_ratings`` claims rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from contentforge.db.models import Base


class PieceRatingORM(Base):
    __tablename__ = "piece_ratings"
    __table_args__ = (CheckConstraint("rating BETWEEN 1 AND 5", name="rating"),)

    piece_id: Mapped[str] = mapped_column(ForeignKey("pieces.id", ondelete="CASCADE"), primary_key=True)
    rater: Mapped[str] = mapped_column(String(200), primary_key=True)
    """Who is accountable for the rating: the API token's identity or the CLI's reviewer, never a name
    the caller may vary freely (a display name sent with a token would let one token rate many times)."""
    rating: Mapped[int] = mapped_column(Integer)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    """The name shown with the rating (the API's ``X-ContentForge-Reviewer``); not part of the key."""
    created_at: Mapped[datetime] = mapped_column()
