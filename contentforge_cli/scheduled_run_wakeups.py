"""Start a worker's flow runs when they are asked for, not at its next poll.

Why: a process worker finds new flow runs only by polling its pool (every 2 s for ``contentforge
cpu-worker``, 10 s by Prefect's default), so a batch asked for waits half an interval on average
before its process even starts; in distributed mode that was a visible part of the gap to the bare
loop (0.6-1.0 s of 3 × 50 pieces' 5-7 s before the first image, on a worker polling every second).
The Prefect server emits a ``prefect.flow-run.Scheduled`` event, related to the run's work pool, for
every run put in a state named Scheduled (not ``Late`` or ``AwaitingRetry``, which the poll finds), and
streams matching events to subscribers within tens of milliseconds. Here the worker subscribes to
its pool's and asks for runs as soon as one arrives.

Nothing else changes: the ask is the worker's own (``get_and_submit_flow_runs``: its queues, prefetch
window and concurrency limit; a run is never started twice: the worker skips runs it is submitting
or already runs, and the server refuses a second Pending), so an event for a run
scheduled for later only costs one small read, and the poll goes on as the fallback for an event
stream that is down or an event that was missed.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import anyio

logger = logging.getLogger(__name__)

SCHEDULED_EVENT = "prefect.flow-run.Scheduled"
RETRY_S = 5.0
"""How long after the event stream failed (server restarting, events disabled) it is opened again."""
MAX_RETRY_S = 300.0
"""The longest wait between attempts, after failures in a row."""
POOL_RETRY_S = 1.0
"""How long to wait for a pool the worker has not created yet."""


class PollingWorker(Protocol):
    """What this module needs of a Prefect worker: its own ask for runs."""

    async def get_and_submit_flow_runs(self) -> list[Any]: ...


class Wakeups:
    """Rings that coalesce: any number of rings while an ask runs make exactly one more ask."""

    def __init__(self) -> None:
        self._rung = anyio.Event()

    def ring(self) -> None:
        self._rung.set()

    async def wait(self) -> None:
        await self._rung.wait()
        self._rung = anyio.Event()


async def submit_when_scheduled(worker: PollingWorker, pool_name: str, *, retry_s: float = RETRY_S) -> None:
    """Ask ``worker`` for runs whenever a run is scheduled on ``pool_name``, until cancelled."""
    wakeups = Wakeups()
    async with anyio.create_task_group() as group:
        group.start_soon(_listen, pool_name, wakeups, retry_s)
        while True:
            await wakeups.wait()
            try:
                await worker.get_and_submit_flow_runs()
            except Exception as error:  # the poll will ask again; one failed ask must not end the worker
                logger.warning("asking for runs after a Scheduled event failed: %s", error)


async def _listen(pool_name: str, wakeups: Wakeups, retry_s: float) -> None:
    """Ring ``wakeups`` for each Scheduled event of the pool's runs; reopen the stream after a failure,
    waiting twice as long after each failure in a row (up to ``MAX_RETRY_S``: a server that refuses the
    stream for good, as a plan without events would, is not asked every few seconds forever)."""
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
    from prefect.exceptions import ObjectNotFound

    failures = 0
    while True:
        try:
            pool_id = await _pool_id(pool_name)
            scheduled_on_pool = EventFilter(
                event=EventNameFilter(name=[SCHEDULED_EVENT]),
                related=EventRelatedFilter(id=[f"prefect.work-pool.{pool_id}"]),
            )
            async with get_events_subscriber(filter=scheduled_on_pool, reconnection_attempts=2) as events:
                failures = 0
                async for _event in events:
                    wakeups.ring()
        except ObjectNotFound:  # the worker creates its pool as it starts: look again in a moment
            await anyio.sleep(POOL_RETRY_S)
            continue
        except Exception as error:
            # Polling still starts every run; say once per outage that runs now wait for it.
            log = logger.debug if failures else logger.warning
            log(
                "the event stream for pool %s is unavailable (%s); runs start at its next poll",
                pool_name,
                error,
            )
            failures += 1
        await anyio.sleep(min(MAX_RETRY_S, retry_s * 2 ** max(0, failures - 1)))


async def _pool_id(pool_name: str) -> Any:
    """The pool's id, as its events name it (the worker creates the pool if it was absent)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return (await client.read_work_pool(pool_name)).id
