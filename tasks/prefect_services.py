"""One start-up lock per Prefect queue-service class, instead of one shared by all of them.

Why: Prefect 3.8's ``_QueueServiceBase.instance`` holds a class-level lock while it starts a new
service on Prefect's global event loop and waits for that loop to run the start; the lock is defined
once, on the base class, so every service class shares it. A warm GPU worker deadlocked on it
(``py-spy dump``, 2026-12-01): the first run of a new batch creates a concurrency-lease service (one
per set of tags, and each batch has a tag of its own) from the run-sync loop thread, holding the lock
and waiting for the global loop, while the task worker on that global loop emits an event, whose
``EventsWorker.instance()`` waits for the same lock. Neither moves again; the worker stays connected
but starts no run, and the batches wait for it.

With a lock per class, creating a lease service no longer blocks the events worker's lookup (and the
global loop never creates a lease service itself: tasks acquire their slots from their own loops), so
the cycle cannot form. The locks are made again in a forked child, as Prefect remakes its own.
"""

from __future__ import annotations

import os
import threading

from prefect._internal.concurrency.services import _QueueServiceBase
from prefect.concurrency.services import (
    ConcurrencySlotAcquisitionService,
    ConcurrencySlotAcquisitionWithLeaseService,
)
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

SERVICE_CLASSES: tuple[type[_QueueServiceBase], ...] = (
    EventsWorker,
    APILogWorker,
    ConcurrencySlotAcquisitionService,
    ConcurrencySlotAcquisitionWithLeaseService,
)


def separate_start_locks() -> None:
    """Give each service class a start-up lock of its own (idempotent; also run in forked children)."""
    for service in SERVICE_CLASSES:
        service._instance_lock = threading.Lock()


separate_start_locks()
os.register_at_fork(after_in_child=separate_start_locks)
