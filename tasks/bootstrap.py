"""Create the Prefect objects a batch relies on, idempotently (safe from several processes at once)."""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from contentforge.config import Settings


def ensure_concurrency_limit(name: str, limit: int) -> Literal["created", "updated", "unchanged"]:
    """Make the global concurrency limit ``name`` exist, be active and allow exactly ``limit`` slots."""
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
                return "created"
            except ObjectAlreadyExists:  # another process won the race
                existing = client.read_global_concurrency_limit_by_name(name)
        if existing.limit == limit and existing.active:
            return "unchanged"
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=limit, active=True))
        return "updated"


def create_limit_if_absent(name: str, limit: int) -> Literal["created", "exists"]:
    """Create the limit ``name`` with ``limit`` slots unless it exists; an existing one is left as set."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return "exists"
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
        except ObjectAlreadyExists:  # another process won the race
            return "exists"
        return "created"


def _batch_limits(settings: Settings) -> dict[str, int]:
    return {
        settings.concurrency_limit_name: settings.generation_slots,
        settings.moderation_concurrency_limit_name: settings.moderation_concurrency,
    }


def ensure_batch_limits(settings: Settings) -> dict[str, str]:
    """Both limits a batch uses (image generation, moderation) set to the configured sizes."""
    return {name: ensure_concurrency_limit(name, size) for name, size in _batch_limits(settings).items()}


@task(name="bootstrap-limits")
def bootstrap_limits(settings: Settings) -> dict[str, str]:
    """Create the batch's limits where absent, so a run started from the UI or a schedule works on a
    server nobody bootstrapped; sizes an operator changed on the server are left alone."""
    return {name: create_limit_if_absent(name, size) for name, size in _batch_limits(settings).items()}
