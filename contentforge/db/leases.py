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
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

DEFAULT_LEASE_S = 60.0
"""Long enough that a busy machine renews in time (every 20 s), short enough that a resume after a
crash waits about a minute."""


def lease_owner(flow_run_id: str | None) -> str:
    """Who holds a lease: host, process and flow run, so a refusal tells the user where it runs."""
    return f"{socket.gethostname()}:pid {os.getpid()}:flow run {flow_run_id or '-'}"[:200]


@contextmanager
def kept_alive(renew: Callable[[], bool], every_s: float, what: str) -> Iterator[threading.Event]:
    """Call ``renew`` every ``every_s`` from a daemon thread while the block runs; yields ``lost``.

    ``renew`` returns False when the lease is someone else's now (this holder stalled past its whole
    lease and another took over): ``lost`` is set and renewing stops; the fenced writes that follow
    decide what the stalled holder may still record. Any other failure (a database hiccup) is logged
    and retried at the next tick. One mechanism for the batch lease and the publication claim.
    """
    lost, stop = threading.Event(), threading.Event()

    def renew_until_stopped() -> None:
        while not stop.wait(every_s):
            try:
                if not renew():
                    logger.warning("%s: lease lost to another holder", what)
                    lost.set()
                    return
            except Exception:  # keep renewing; the fenced final write still decides
                logger.exception("%s: lease renewal failed", what)

    thread = threading.Thread(target=renew_until_stopped, name=f"lease {what}"[:60], daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        stop.set()
        thread.join()
