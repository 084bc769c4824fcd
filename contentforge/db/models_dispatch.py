"""ORM table of the slot dispatcher's demands (issue 14): who waits for ``image-generation`` slots.

One row per share (one batch's generations in one process's dispatcher) and limit: its priority
rank, how many generations wait (at most as many as its process could start at once) and run, how many
it started so far (from the level it joined the rotation at), and when its process last said so.
``contentforge.db.turns`` reads and writes it; ``contentforge.fair_share`` turns it into targets.
A row whose ``seen_at`` is older than a few seconds belongs to a dead process and is ignored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
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


class SlotOfferORM(Base):
    """A held slot's lease offered by the process giving it back to the process it is owed to.

    Why: released to the Prefect server, a slot is anyone's; a process that read the demand table a
    moment earlier could take it before the waiting high-priority process asks, and the release and
    the new acquisition are two writes on a busy server. Offered here, the lease never leaves the
    giver's hands until the recipient marks the row taken (``contentforge.db.slot_offers``).

    The id is chosen by the giver (a UUID), never by the database: SQLite reuses the integer key of a
    deleted row, and a giver checking "its" offer would then read or withdraw another giver's.
    """

    __tablename__ = "slot_offers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    limit_name: Mapped[str] = mapped_column(String(200))
    recipient: Mapped[str] = mapped_column(String(64))
    giver: Mapped[str] = mapped_column(String(64))
    lease_id: Mapped[str] = mapped_column(String(64))
    offered_at: Mapped[datetime] = mapped_column()
    taken_by: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index(None, "limit_name", "recipient"),)  # a recipient looks for its offers
