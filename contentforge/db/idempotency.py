"""``Idempotency-Key`` entries in the database: taken before the work starts, settled with its answer.

A request that carries a key first *claims* it (``IdempotencyStore.claim``). The claim is an INSERT
guarded by the table's primary key (token identity, endpoint, key), so of any number of concurrent
requests on any number of API processes exactly one gets ``Claimed`` and does the work (calls the
model, starts the flow run); the others see the entry that won:

* ``Replay``: the work is done; its answer is handed back, nothing runs again;
* ``InProgress``: another request is still doing it (the caller may wait a little, then answer 409);
* ``Mismatch``: the key was used with another request body (the IETF draft's 422).

The owner settles the entry with its answer (``settle``) or, when the work failed, gives it up
(``release``) so a retry may do the work; both only touch the entry while the owner still holds it.
An owner that died mid-work leaves a ``pending`` entry whose lease runs out: a later request with
the same key and body takes it over. After ``expires_at`` (the TTL) a key is forgotten and starts
new work.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from contentforge.db.models import utcnow
from contentforge.db.models_idempotency import IdempotencyKeyORM
from contentforge.db.sessions import Store, insert_for, rows_changed


@dataclass(frozen=True)
class KeyScope:
    """Whose key on which endpoint: a key of one token never answers another token's request."""

    identity: str
    endpoint: str
    key: str


@dataclass(frozen=True)
class Claimed:
    """This request owns the key: do the work, then ``settle`` (or ``release`` on failure)."""

    holder: str


@dataclass(frozen=True)
class Replay:
    """The work was done by an earlier request with the same key and body: its answer."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class InProgress:
    """Another request with the same key and body is doing the work right now."""

    lease_expires_at: datetime


@dataclass(frozen=True)
class Mismatch:
    """The key was first used with a different request body."""


Claim = Claimed | Replay | InProgress | Mismatch


class IdempotencyStore(Store):
    def claim(
        self,
        scope: KeyScope,
        request_sha256: str,
        *,
        ttl: timedelta,
        lease: timedelta,
        now: datetime | None = None,
    ) -> Claim:
        """Take the key for this request, or say who has it (see the module docstring)."""
        now = now or utcnow()
        holder = secrets.token_hex(16)
        values = {
            "identity": scope.identity,
            "endpoint": scope.endpoint,
            "idempotency_key": scope.key,
            "request_sha256": request_sha256,
            "state": "pending",
            "holder": holder,
            "response_status": None,
            "response_body": None,
            "created_at": now,
            "lease_expires_at": now + lease,
            "expires_at": now + ttl,
        }
        with self._db.write() as session:
            # RETURNING, not the row count: psycopg reports a row count for an INSERT that did nothing.
            inserted = session.execute(
                insert_for(session, IdempotencyKeyORM)
                .values(**values)
                .on_conflict_do_nothing()
                .returning(IdempotencyKeyORM.holder)
            ).scalar_one_or_none()
            if inserted == holder:
                return Claimed(holder)
            row = session.execute(
                select(IdempotencyKeyORM).where(*_matches(scope)).with_for_update()
            ).scalar_one()
            forgotten = row.expires_at <= now
            abandoned = row.state == "pending" and row.lease_expires_at <= now
            if forgotten or (abandoned and row.request_sha256 == request_sha256):
                # Take it over; the holder condition makes a second taker (PostgreSQL) change nothing.
                taken = session.execute(
                    update(IdempotencyKeyORM)
                    .where(*_matches(scope), IdempotencyKeyORM.holder == row.holder)
                    .values(**values)
                )
                if rows_changed(taken):
                    return Claimed(holder)
                session.refresh(row)
            if row.request_sha256 != request_sha256:
                return Mismatch()
            if row.state == "done" and row.response_status is not None:
                return Replay(row.response_status, dict(row.response_body or {}))
            return InProgress(row.lease_expires_at)

    def settle(self, scope: KeyScope, holder: str, status: int, body: dict[str, Any]) -> bool:
        """Keep the answer of the work ``holder`` did; False when the entry is no longer its own."""
        with self._db.write() as session:
            result = session.execute(
                update(IdempotencyKeyORM)
                .where(*_matches(scope), IdempotencyKeyORM.holder == holder)
                .values(state="done", response_status=status, response_body=body)
            )
            return rows_changed(result) == 1

    def renew(self, scope: KeyScope, holder: str, lease: timedelta, *, now: datetime | None = None) -> bool:
        """Extend the lease of a ``pending`` entry ``holder`` still owns (work that is still running);
        False when it is no longer its own."""
        with self._db.write() as session:
            result = session.execute(
                update(IdempotencyKeyORM)
                .where(
                    *_matches(scope),
                    IdempotencyKeyORM.holder == holder,
                    IdempotencyKeyORM.state == "pending",
                )
                .values(lease_expires_at=(now or utcnow()) + lease)
            )
            return rows_changed(result) == 1

    def release(self, scope: KeyScope, holder: str) -> None:
        """Forget a key whose work failed, so a retry with it does the work (only the holder's entry)."""
        with self._db.write() as session:
            session.execute(
                delete(IdempotencyKeyORM).where(
                    *_matches(scope), IdempotencyKeyORM.holder == holder, IdempotencyKeyORM.state == "pending"
                )
            )

    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete the entries past their TTL; how many went."""
        with self._db.write() as session:
            result = session.execute(
                delete(IdempotencyKeyORM).where(IdempotencyKeyORM.expires_at <= (now or utcnow()))
            )
            return rows_changed(result)


def _matches(scope: KeyScope) -> tuple[Any, ...]:
    return (
        IdempotencyKeyORM.identity == scope.identity,
        IdempotencyKeyORM.endpoint == scope.endpoint,
        IdempotencyKeyORM.idempotency_key == scope.key,
    )
