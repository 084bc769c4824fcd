"""The demand table that lets slot dispatchers in different processes agree on who runs next.

Why the ContentForge database: every process that generates images already shares it (distributed
mode requires it), it arbitrates concurrent writers on SQLite and PostgreSQL alike, and a row per
share can name what the Prefect server's concurrency limit cannot: which batch waits, at which
priority, and how much it was served. The slots themselves stay on the Prefect server's limit; this
table only decides who should ask for the next one (``contentforge.fair_share``).

Each dispatcher (a ``participant``) replaces its own rows in one short transaction and reads everyone's
rows seen in the last ``fresh_s`` seconds; a process that died stops refreshing and drops out of the
split by itself. Clocks of the machines must agree within ``fresh_s`` (NTP does much better).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select

from contentforge.db.models import utcnow
from contentforge.db.models_dispatch import DispatchDemandORM
from contentforge.db.sessions import SessionPolicy
from contentforge.fair_share import ShareDemand


class DemandTable:
    """Read and replace one limit's demand rows (short transactions, one per call)."""

    def __init__(self, source: Engine | SessionPolicy, limit_name: str, fresh_s: float = 10.0) -> None:
        self._db = SessionPolicy.of(source)
        self.limit_name = limit_name
        self.fresh_s = fresh_s

    @property
    def sessions(self) -> SessionPolicy:
        return self._db

    def publish(self, participant: str, demands: Sequence[ShareDemand]) -> list[ShareDemand]:
        """Replace ``participant``'s rows with ``demands`` and return every live row of the limit.

        Shares that want nothing and were never served are left out; an empty list withdraws the
        participant altogether. Stale rows of dead participants are deleted on the way.
        """
        now = utcnow()
        with self._db.write() as session:
            session.execute(
                delete(DispatchDemandORM).where(
                    DispatchDemandORM.limit_name == self.limit_name,
                    DispatchDemandORM.participant == participant,
                )
            )
            session.execute(
                delete(DispatchDemandORM).where(
                    DispatchDemandORM.limit_name == self.limit_name,
                    DispatchDemandORM.seen_at < now - timedelta(seconds=self.fresh_s),
                )
            )
            session.add_all(
                DispatchDemandORM(
                    limit_name=self.limit_name,
                    participant=participant,
                    share=demand.share,
                    rank=demand.rank,
                    waiting=demand.waiting,
                    running=demand.running,
                    served=demand.served,
                    seen_at=now,
                )
                for demand in demands
                if demand.wants > 0
            )
            session.flush()
            rows = session.scalars(
                select(DispatchDemandORM).where(DispatchDemandORM.limit_name == self.limit_name)
            ).all()
            return [_demand(row) for row in rows]

    def read(self, now: datetime | None = None) -> list[ShareDemand]:
        """Every share of the limit seen in the last ``fresh_s`` seconds."""
        since = (now or utcnow()) - timedelta(seconds=self.fresh_s)
        with self._db.read() as session:
            rows = session.scalars(
                select(DispatchDemandORM).where(
                    DispatchDemandORM.limit_name == self.limit_name, DispatchDemandORM.seen_at >= since
                )
            ).all()
            return [_demand(row) for row in rows]


def _demand(row: DispatchDemandORM) -> ShareDemand:
    return ShareDemand(
        participant=row.participant,
        share=row.share,
        rank=row.rank,
        waiting=row.waiting,
        running=row.running,
        served=row.served,
    )
