"""One runner per batch: a lease on the batch row, renewed while its runner lives.

Why a lease and not a lock: a runner killed with ``kill -9`` releases nothing. A lease expires on
its own ``ttl`` after the last renewal, so a resume can take the batch over once the dead runner's
lease has run out, while a live runner (renewing every ``ttl / 3``) is never overtaken. A second
runner that arrives while the lease is live is refused with ``BatchBusy`` naming the holder, or
waits for it when asked to (``wait_s``).

The database does the arbitration: taking the lease is one guarded ``UPDATE … WHERE lease is free
or expired or ours``, so of two runners racing, exactly one sees its row updated, on SQLite and
PostgreSQL alike.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contentforge.db.repository import Repository

logger = logging.getLogger(__name__)

DEFAULT_LEASE_S = 60.0
"""Long enough that a busy machine renews in time (every 20 s), short enough that a resume after a
crash waits about a minute."""


def lease_owner(flow_run_id: str | None) -> str:
    """Who holds a lease: host, process and flow run, so a refusal tells the user where it runs."""
    return f"{socket.gethostname()}:pid {os.getpid()}:flow run {flow_run_id or '-'}"[:200]


class LeaseRenewer:
    """Renews a batch lease from a daemon thread until ``stop``; ``lost`` is set if another runner took it.

    A lease is lost only when this process stalled for longer than the whole ``ttl`` (so the lease
    expired and a resume took over); the work then continues but ``lost`` tells the flow to stop
    writing its summary over the new runner's.
    """

    def __init__(self, repo: Repository, batch_id: str, owner: str, ttl_s: float) -> None:
        self.repo, self.batch_id, self.owner, self.ttl_s = repo, batch_id, owner, ttl_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{batch_id[:12]}", daemon=True)

    def start(self) -> LeaseRenewer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.repo.renew_batch_lease(self.batch_id, self.owner, self.ttl_s):
                    logger.error("batch %s: lease lost to another runner", self.batch_id)
                    self.lost.set()
                    return
            except Exception as exc:  # a database hiccup: try again at the next period
                logger.warning("batch %s: lease renewal failed: %s", self.batch_id, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
