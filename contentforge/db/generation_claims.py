"""Generation claims: of all the processes sent the same piece, one generates it, the others wait.

Why: a piece may be sent to more than one generating process, and each would pay for its image. A warm
GPU worker that the Prefect server stopped seeing after it claimed its run goes on generating while the
batch sends the same pieces to another worker; a resume started while a cancelled batch's run still
finishes sends them again. Storing stays idempotent either way (one image per piece), but the second
generation is GPU time, and on a paid backend money. A claim names who generates a piece now.

A claim is a lease, not a lock, for the reason batch leases are (``contentforge.db.leases``): a process
killed with ``kill -9`` releases nothing, so its claims run out ``lease_s`` after their last renewal and
another process takes the pieces over. Taking a claim is one ``INSERT … ON CONFLICT DO UPDATE … WHERE
the claim expired or is this token's``, so of two claimants at once exactly one gets each piece, on
SQLite and PostgreSQL alike. Each claim has a ``token`` of its own (not the process's name): two runs in
one process sent the same piece wait for each other like two processes do.

``ClaimKeeper`` is a process's holder of claims: one daemon thread renews every claim it holds every
third of the lease, however many runs hold claims, and notices when a claim was taken over (the process
stalled for a whole lease).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update

from contentforge.db.models import utcnow
from contentforge.db.models_claims import GenerationClaimORM
from contentforge.db.sessions import Store, insert_for, rows_changed

logger = logging.getLogger(__name__)

DEFAULT_CLAIM_S = 30.0
"""A claim's lease: renewed every 10 s, so a busy machine renews in time; a dead claimant's pieces are
taken over about half a minute after it died."""


@dataclass(frozen=True)
class ClaimHolder:
    """Who holds a live claim on a piece, and until when unless renewed."""

    owner: str
    expires_at: datetime


class GenerationClaims(Store):
    """Take, renew, release and read generation claims (see the module docstring)."""

    def claim(self, piece_ids: Iterable[str], owner: str, token: str, lease_s: float) -> set[str]:
        """Claim the pieces for ``token``; returns those it holds now (new, taken over, or already its own).

        A piece another token holds with a live lease is not returned: its claimant generates it.
        """
        # Sorted: PostgreSQL locks the conflicting rows in VALUES order and ``renew`` locks them by
        # piece id, so a take and a renewal on the same rows never wait on each other in a cycle.
        ids = sorted(set(piece_ids))
        if not ids:
            return set()
        now = utcnow()
        expires_at = now + timedelta(seconds=lease_s)
        with self._db.write() as session:
            statement = insert_for(session, GenerationClaimORM).values(
                [{"piece_id": i, "owner": owner[:200], "token": token, "expires_at": expires_at} for i in ids]
            )
            statement = statement.on_conflict_do_update(
                index_elements=[GenerationClaimORM.piece_id],
                set_={
                    "owner": statement.excluded.owner,
                    "token": statement.excluded.token,
                    "expires_at": statement.excluded.expires_at,
                },
                where=or_(GenerationClaimORM.expires_at < now, GenerationClaimORM.token == token),
            )
            # RETURNING lists the rows inserted or updated; a conflict whose WHERE was false returns none.
            return set(session.execute(statement.returning(GenerationClaimORM.piece_id)).scalars())

    def renew(self, tokens: Iterable[str], lease_s: float) -> dict[str, set[str]]:
        """Extend every claim the tokens hold; returns the pieces each token still holds."""
        wanted = list(tokens)
        if not wanted:
            return {}
        held: dict[str, set[str]] = {token: set() for token in wanted}
        with self._db.write() as session:
            # Lock the rows in piece-id order first (PostgreSQL; SQLite has one writer): the order a
            # concurrent ``claim`` takes them in, so the two cannot deadlock.
            session.execute(
                select(GenerationClaimORM.piece_id)
                .where(GenerationClaimORM.token.in_(wanted))
                .order_by(GenerationClaimORM.piece_id)
                .with_for_update()
            )
            rows = session.execute(
                update(GenerationClaimORM)
                .where(GenerationClaimORM.token.in_(wanted))
                .values(expires_at=utcnow() + timedelta(seconds=lease_s))
                .returning(GenerationClaimORM.token, GenerationClaimORM.piece_id)
            ).all()
        for token, piece_id in rows:
            held[token].add(piece_id)
        return held

    def release(self, token: str, piece_ids: Iterable[str] | None = None) -> int:
        """Give up the token's claims (on ``piece_ids`` only, when given); returns how many were given up."""
        with self._db.write() as session:
            statement = delete(GenerationClaimORM).where(GenerationClaimORM.token == token)
            if piece_ids is not None:
                statement = statement.where(GenerationClaimORM.piece_id.in_(list(piece_ids)))
            return rows_changed(session.execute(statement))

    def holders(self, piece_ids: Iterable[str]) -> dict[str, ClaimHolder]:
        """The live claims on these pieces (an expired one is nobody's), by piece id."""
        ids = list(piece_ids)
        if not ids:
            return {}
        with self._db.read() as session:
            rows = session.execute(
                select(
                    GenerationClaimORM.piece_id, GenerationClaimORM.owner, GenerationClaimORM.expires_at
                ).where(GenerationClaimORM.piece_id.in_(ids), GenerationClaimORM.expires_at >= utcnow())
            ).all()
        return {piece_id: ClaimHolder(owner, expires_at) for piece_id, owner, expires_at in rows}


@dataclass
class Claim:
    """One claimant's claims (a run's): its token and the pieces it holds now."""

    owner: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    held: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    """Pieces whose claim another token took over while this one held it (this process stalled)."""


class ClaimKeeper:
    """A process's generation claims, renewed every ``lease_s / 3`` by one daemon thread while any is held."""

    def __init__(self, claims: GenerationClaims, lease_s: float = DEFAULT_CLAIM_S) -> None:
        self.claims = claims
        self.lease_s = lease_s
        self._open: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._writing = threading.Lock()
        """Taking and renewing one after the other: a renewal that read the rows before a take added to
        them would count the new pieces as taken over."""

    def claim(self, owner: str, piece_ids: Sequence[str]) -> Claim:
        """A new claim for ``owner`` on whichever of the pieces nobody else holds; renewed until released."""
        claim = Claim(owner)
        with self._lock:
            self._open[claim.token] = claim
            self._start_renewing()
        try:
            self.take(claim, piece_ids)
        except BaseException:
            # Nothing was taken: stop renewing a token nobody will release (the thread would keep it).
            with self._lock:
                self._open.pop(claim.token, None)
            raise
        return claim

    def take(self, claim: Claim, piece_ids: Sequence[str]) -> list[str]:
        """Add the pieces nobody holds (released, expired) to ``claim``; returns those, in the given order."""
        with self._writing:
            got = self.claims.claim(piece_ids, claim.owner, claim.token, self.lease_s)
            with self._lock:
                claim.held |= got
        return [piece_id for piece_id in piece_ids if piece_id in got]

    def release(self, claim: Claim) -> None:
        """Stop renewing the claim and give its pieces up (their images are stored, or it failed).

        A release that fails (the database is down) is logged: unrenewed, the claims expire within a lease.
        """
        with self._lock:
            self._open.pop(claim.token, None)
            claim.held.clear()
        try:
            self.claims.release(claim.token)
        except Exception:  # never masks the run's own outcome: unrenewed, the claims run out on their own
            logger.exception(
                "%s: releasing its generation claims failed; they expire in %g s", claim.owner, self.lease_s
            )

    def renew_now(self) -> None:
        """Renew every open claim once; a piece another token took over moves to its claim's ``lost``."""
        with self._writing:
            with self._lock:
                tokens = list(self._open)
            held = self.claims.renew(tokens, self.lease_s)
            with self._lock:
                for token, pieces in held.items():
                    claim = self._open.get(token)
                    if claim is None:  # released meanwhile
                        continue
                    lost = claim.held - pieces
                    if lost:
                        logger.warning(
                            "%s: generation claims on %s were taken over", claim.owner, sorted(lost)
                        )
                        claim.lost |= lost
                        claim.held -= lost

    def _start_renewing(self) -> None:
        """Start the renewal thread if it is not running (called with the lock held)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._renew_while_held, name="generation-claims", daemon=True)
        self._thread.start()

    def _renew_while_held(self) -> None:
        """Renew every third of the lease while claims are open; end when none is (a claim restarts it)."""
        while True:
            with self._lock:
                self._wake.wait(self.lease_s / 3)
                if not self._open:
                    self._thread = None
                    return
            try:
                self.renew_now()
            except Exception:  # a database hiccup: the next tick renews, well before the lease runs out
                logger.exception("renewing generation claims failed")
