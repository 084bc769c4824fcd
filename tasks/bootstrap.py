"""Create the Prefect objects a batch relies on, idempotently (safe from several processes at once)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from prefect import task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
    WorkPoolCreate,
)
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
        settings.llm_concurrency_limit_name: settings.llm_concurrency,
    }


def ensure_batch_limits(settings: Settings) -> dict[str, str]:
    """The limits a batch uses (image generation, moderation, model calls) set to the configured sizes."""
    return {name: ensure_concurrency_limit(name, size) for name, size in _batch_limits(settings).items()}


@task(name="bootstrap-limits")
def bootstrap_limits(settings: Settings) -> dict[str, str]:
    """Create the batch's limits where absent, so a run started from the UI or a schedule works on a
    server nobody bootstrapped; sizes an operator changed on the server are left alone."""
    return {name: create_limit_if_absent(name, size) for name, size in _batch_limits(settings).items()}


INFRA_POOLS = Path(__file__).resolve().parents[1] / "infra" / "pools"
POOL_TEMPLATES: dict[tuple[str, str], str] = {
    ("cpu", "process"): "process.json",
    ("gpu", "process"): "process-gpu.json",
    ("gpu", "docker"): "docker-gpu.json",
    ("gpu", "kubernetes"): "kubernetes-gpu.json",
}
"""Base job templates in ``infra/pools``: (pool role, worker type) -> file."""

WORK_QUEUES: tuple[tuple[str, int], ...] = (("priority", 1), ("default", 2))
"""Queues of every pool; Prefect serves a lower number first, so paid-tier ``priority`` runs first."""


def base_job_template(role: str, worker_type: str) -> dict[str, Any]:
    """The base job template for a pool role and worker type, from ``infra/pools``."""
    name = POOL_TEMPLATES.get((role, worker_type))
    if name is None:
        raise ValueError(f"no base job template for a {worker_type!r} {role} pool")
    return json.loads((INFRA_POOLS / name).read_text())


def ensure_work_pool(
    name: str, worker_type: str, template: dict[str, Any]
) -> Literal["created", "unchanged"]:
    """Make the pool exist; an existing pool (perhaps edited in the UI) is left as it is."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return "unchanged"
        except ObjectNotFound:
            pass
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type=worker_type, base_job_template=template))
        except ObjectAlreadyExists:
            return "unchanged"
        return "created"


def ensure_work_queue(pool: str, name: str, priority: int) -> Literal["created", "updated", "unchanged"]:
    """Make ``pool`` have queue ``name`` at ``priority`` (the pool's own ``default`` queue included)."""
    with get_client(sync_client=True) as client:
        try:
            queue = client.read_work_queue_by_name(name, work_pool_name=pool)
        except ObjectNotFound:
            try:
                client.create_work_queue(name=name, work_pool_name=pool, priority=priority)
                return "created"
            except ObjectAlreadyExists:
                queue = client.read_work_queue_by_name(name, work_pool_name=pool)
        if queue.priority == priority:
            return "unchanged"
        client.update_work_queue(queue.id, priority=priority)
        return "updated"


def bootstrap_cluster(settings: Settings, gpu_worker_type: str = "process") -> dict[str, str]:
    """Everything a server needs before deployments run: limits, pools and their queues."""
    outcome = {f"limit {name}": result for name, result in ensure_batch_limits(settings).items()}
    for role, worker_type in (("cpu", "process"), ("gpu", gpu_worker_type)):
        pool = settings.cpu_pool if role == "cpu" else settings.gpu_pool
        outcome[f"pool {pool}"] = ensure_work_pool(pool, worker_type, base_job_template(role, worker_type))
        for queue, priority in WORK_QUEUES:
            outcome[f"queue {pool}/{queue}"] = ensure_work_queue(pool, queue, priority)
    return outcome
