"""ORM table of the API's ``Idempotency-Key`` entries (issue 14; revision 0015).

One row per (token identity, endpoint, key): ``pending`` while the first request does the work,
``done`` with the answer kept for retries. ``contentforge.db.idempotency`` takes and settles them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from contentforge.db.models import Base

IDEMPOTENCY_STATES: tuple[str, ...] = ("pending", "done")


class IdempotencyKeyORM(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (CheckConstraint("state IN ('pending', 'done')", name="state"),)

    identity: Mapped[str] = mapped_column(String(64), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(300), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    holder: Mapped[str] = mapped_column(String(64))
    """Who does the work of a ``pending`` entry: a token minted per request, so only it settles it."""
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    lease_expires_at: Mapped[datetime] = mapped_column()
    """A ``pending`` entry older than this was left by a request that died; another may take it over."""
    expires_at: Mapped[datetime] = mapped_column(index=True)
    """After this the key is forgotten: the same key then starts new work."""
