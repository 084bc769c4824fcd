"""ORM table of the slot dispatcher's demands (issue 14): who waits for ``image-generation`` slots.

One row per share (one batch's generations in one process's dispatcher) and limit: its priority
rank, how many generations wait (at most as many as its process could start at once) and run, how many
it started so far (from the level it joined the rotation at), and when its process last said so.
``contentforge.db.turns`` reads and writes it; ``contentforge.fair_share`` turns it into targets.
A row whose ``seen_at`` is older than a few seconds belongs to a dead process and is ignored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from contentforge.db.models import Base


class DispatchDemandORM(Base):
    __tablename__ = "dispatch_demands"

    limit_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    participant: Mapped[str] = mapped_column(String(64), primary_key=True)
    share: Mapped[str] = mapped_column(String(200), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer)
    waiting: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer)
    served: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column()
