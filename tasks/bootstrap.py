"""Create the Prefect objects a batch relies on, idempotently (safe from several processes at once)."""

from __future__ import annotations

from typing import Literal

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


def ensure_batch_limits(settings: Settings) -> dict[str, str]:
    """Both limits a batch uses: image generation (strict) and moderation; name -> outcome."""
    return {
        settings.concurrency_limit_name: ensure_concurrency_limit(
            settings.concurrency_limit_name, settings.generation_slots
        ),
        settings.moderation_concurrency_limit_name: ensure_concurrency_limit(
            settings.moderation_concurrency_limit_name, settings.moderation_concurrency
        ),
    }
