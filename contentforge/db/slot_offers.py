"""Hand a held slot of a shared limit straight to the process it is owed to, through the database.

Why: a slot dispatcher that gives a slot back for a more urgent process elsewhere (``SplitView``) used
to release it on the Prefect server, and the waiting process then acquired it: two writes on a server
that answers concurrent writes slowly, and a moment in which any other process reading an older demand
table could take the free slot first (measured: a high-priority generation waited 1.35 generations, one
normal generation having started in between). An offer keeps the slot taken on the server the whole
time: the lease simply changes hands.

The protocol is one row and one race. The giver inserts the row (its id a UUID the giver chose) and
stops generating in that slot. The recipient takes the offer by marking the row taken; the giver
withdraws it, when it was not taken in time, by deleting the row while it is still untaken. Both are
conditional writes on ``taken_by IS NULL``, which succeed for exactly one of them on SQLite (one writer
at a time) and PostgreSQL (the row is re-checked after a concurrent update) alike, so exactly one
process owns the lease at any moment and the limit holds. Because a taken row stays until its giver
forgets it, the giver can always tell "taken" from "never written" (``state``), even after a write
whose outcome it did not hear. Rows left by a giver that died are ignored after ``stale_s`` and
deleted after ``forget_s``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import Engine, delete, select, update

from contentforge.db.models import utcnow
from contentforge.db.models_dispatch import SlotOfferORM
from contentforge.db.sessions import SessionPolicy, rows_changed


class OfferState(StrEnum):
    OPEN = "open"
    TAKEN = "taken"
    ABSENT = "absent"
    """Never written (the insert failed), or withdrawn or forgotten since."""


@dataclass(frozen=True)
class SlotOffer:
    """An offer the recipient may take: whose slot, and its lease on the Prefect server."""

    offer_id: str
    giver: str
    lease_id: str


class SlotOffers:
    """Offers of one limit's slots between dispatchers (short transactions, one per call).

    ``stale_s``: how old an offer may be and still be taken. Keep it below a third of the lease's
    duration: the giver renews the lease every third of it until the offer is settled, and the taker
    renews it at once on taking it (``SlotDispatcher._take_offer``), so a lease taken over has not
    expired meanwhile. ``forget_s``: when rows nobody settled (their giver died) are deleted; far above
    any clock difference between machines, so a live offer is never deleted by another's clean-up.
    """

    def __init__(
        self, source: Engine | SessionPolicy, limit_name: str, stale_s: float = 10.0, forget_s: float = 600.0
    ) -> None:
        self._db = SessionPolicy.of(source)
        self.limit_name = limit_name
        self.stale_s = stale_s
        self.forget_s = forget_s

    def offer(self, giver: str, recipient: str, lease_id: str, offer_id: str | None = None) -> str:
        """Offer ``giver``'s lease to ``recipient``; the offer's id (``offer_id`` if given: a giver that
        chooses it first can ask ``state`` about it when this call fails). The giver must not generate in
        that slot until the offer is withdrawn (``withdraw`` returned True)."""
        offer_id = offer_id or uuid.uuid4().hex
        now = utcnow()
        with self._db.write() as session:
            session.execute(
                delete(SlotOfferORM).where(
                    SlotOfferORM.limit_name == self.limit_name,
                    SlotOfferORM.offered_at < now - timedelta(seconds=self.forget_s),
                )
            )
            session.add(
                SlotOfferORM(
                    id=offer_id,
                    limit_name=self.limit_name,
                    recipient=recipient,
                    giver=giver,
                    lease_id=lease_id,
                    offered_at=now,
                )
            )
        return offer_id

    def pending_for(self, recipient: str) -> list[SlotOffer]:
        """Offers made to ``recipient`` and still open, oldest first (a read: no write lock on SQLite)."""
        since = utcnow() - timedelta(seconds=self.stale_s)
        with self._db.read() as session:
            rows = session.scalars(
                select(SlotOfferORM)
                .where(
                    SlotOfferORM.limit_name == self.limit_name,
                    SlotOfferORM.recipient == recipient,
                    SlotOfferORM.taken_by.is_(None),
                    SlotOfferORM.offered_at >= since,
                )
                .order_by(SlotOfferORM.offered_at, SlotOfferORM.id)
            ).all()
            return [SlotOffer(row.id, row.giver, row.lease_id) for row in rows]

    def take(self, recipient: str) -> SlotOffer | None:
        """Take the oldest open offer made to ``recipient``: its lease is the recipient's from now on.

        None when there is none, or when each was withdrawn first: then the lease stays with its giver.
        """
        for offer in self.pending_for(recipient):
            with self._db.write() as session:
                taken = session.execute(
                    update(SlotOfferORM)
                    .where(
                        SlotOfferORM.id == offer.offer_id,
                        SlotOfferORM.limit_name == self.limit_name,
                        SlotOfferORM.recipient == recipient,
                        SlotOfferORM.taken_by.is_(None),
                    )
                    .values(taken_by=recipient)
                )
                if rows_changed(taken) == 1:
                    return offer
        return None

    def withdraw(self, offer_id: str) -> bool:
        """Take an untaken offer back: True if it was still open (the lease stays the giver's); False if
        it was taken (the giver must neither generate in that slot nor release it) or is not there."""
        with self._db.write() as session:
            withdrawn = session.execute(
                delete(SlotOfferORM).where(
                    SlotOfferORM.id == offer_id,
                    SlotOfferORM.limit_name == self.limit_name,
                    SlotOfferORM.taken_by.is_(None),
                )
            )
            return rows_changed(withdrawn) == 1

    def state(self, offer_id: str) -> OfferState:
        """Whether the offer is open, taken, or not there (a read)."""
        with self._db.read() as session:
            row = session.get(SlotOfferORM, offer_id)
            if row is None or row.limit_name != self.limit_name:
                return OfferState.ABSENT
            return OfferState.OPEN if row.taken_by is None else OfferState.TAKEN

    def forget(self, offer_id: str) -> None:
        """Delete a settled offer (its giver saw it taken): the row has told the giver all it had to."""
        with self._db.write() as session:
            session.execute(
                delete(SlotOfferORM).where(
                    SlotOfferORM.id == offer_id, SlotOfferORM.limit_name == self.limit_name
                )
            )
