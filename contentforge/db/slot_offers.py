"""Hand a held slot of a shared limit straight to the process it is owed to, through the database.

Why: a slot dispatcher that gives a slot back for a more urgent process elsewhere (``SplitView``) used
to release it on the Prefect server, and the waiting process then acquired it: two writes on a server
that answers concurrent writes slowly, and a moment in which any other process reading an older demand
table could take the free slot first (measured: a high-priority generation waited 1.35 generations, one
normal generation having started in between). An offer keeps the slot taken on the server the whole
time: the lease simply changes hands.

The protocol is one row and one race. The giver inserts the row and stops generating in that slot. The
recipient takes the offer by deleting the row; the giver withdraws it (when it was not taken in time)
by deleting the row too. A DELETE of one row by its key succeeds for exactly one of them, on SQLite
(one writer at a time) and PostgreSQL (row lock) alike, so exactly one process owns the lease at any
moment and the limit holds. A row never deleted (its giver died) stays until its lease has expired on
the server anyway, and is then ignored and removed (``stale_s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, delete, select

from contentforge.db.models import utcnow
from contentforge.db.models_dispatch import SlotOfferORM
from contentforge.db.sessions import SessionPolicy, rows_changed


@dataclass(frozen=True)
class SlotOffer:
    """An offer the recipient may take: whose slot, and its lease on the Prefect server."""

    offer_id: int
    giver: str
    lease_id: str


class SlotOffers:
    """Offers of one limit's slots between dispatchers (short transactions, one per call).

    ``stale_s``: how old an offer may be and still be taken; set it below the lease's duration, so a
    lease taken over is never one that expired on the server meanwhile (its giver renews it until the
    offer is taken or withdrawn).
    """

    def __init__(self, source: Engine | SessionPolicy, limit_name: str, stale_s: float = 10.0) -> None:
        self._db = SessionPolicy.of(source)
        self.limit_name = limit_name
        self.stale_s = stale_s

    def offer(self, giver: str, recipient: str, lease_id: str) -> int:
        """Offer ``giver``'s lease to ``recipient``; the offer's id. The giver must not generate in that
        slot until it has withdrawn the offer (``withdraw`` returned True)."""
        now = utcnow()
        with self._db.write() as session:
            session.execute(
                delete(SlotOfferORM).where(
                    SlotOfferORM.limit_name == self.limit_name,
                    SlotOfferORM.offered_at < now - timedelta(seconds=self.stale_s),
                )
            )
            row = SlotOfferORM(
                limit_name=self.limit_name,
                recipient=recipient,
                giver=giver,
                lease_id=lease_id,
                offered_at=now,
            )
            session.add(row)
            session.flush()
            return row.id

    def pending_for(self, recipient: str) -> list[SlotOffer]:
        """Offers made to ``recipient`` and still open, oldest first (a read: no write lock on SQLite)."""
        since = utcnow() - timedelta(seconds=self.stale_s)
        with self._db.read() as session:
            rows = session.scalars(
                select(SlotOfferORM)
                .where(
                    SlotOfferORM.limit_name == self.limit_name,
                    SlotOfferORM.recipient == recipient,
                    SlotOfferORM.offered_at >= since,
                )
                .order_by(SlotOfferORM.id)
            ).all()
            return [SlotOffer(row.id, row.giver, row.lease_id) for row in rows]

    def take(self, recipient: str) -> SlotOffer | None:
        """Take the oldest open offer made to ``recipient``: its lease is the recipient's from now on.

        None when there is none, or when each was withdrawn (or taken) first: then the lease stays
        with its giver.
        """
        for offer in self.pending_for(recipient):
            if self._delete(offer.offer_id):
                return offer
        return None

    def withdraw(self, offer_id: int) -> bool:
        """Take an offer back: True if it was still open (the lease stays the giver's), False if the
        recipient took it first (the giver must neither generate in that slot nor release it)."""
        return self._delete(offer_id)

    def is_open(self, offer_id: int) -> bool:
        """Whether the offer was neither taken nor withdrawn yet (a read)."""
        with self._db.read() as session:
            return session.get(SlotOfferORM, offer_id) is not None

    def _delete(self, offer_id: int) -> bool:
        with self._db.write() as session:
            return (
                rows_changed(
                    session.execute(
                        delete(SlotOfferORM).where(
                            SlotOfferORM.id == offer_id, SlotOfferORM.limit_name == self.limit_name
                        )
                    )
                )
                == 1
            )
