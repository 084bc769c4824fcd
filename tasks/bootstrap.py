"""Create the Prefect objects a batch relies on, idempotently (safe from several processes at once)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from prefect import task
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
    WorkPoolCreate,
)
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError

from contentforge.config import Settings
from tasks.prefect_clients import api_client


def ensure_concurrency_limit(name: str, limit: int) -> Literal["created", "updated", "unchanged"]:
    """Make the global concurrency limit ``name`` exist, be active and allow exactly ``limit`` slots."""
    with api_client(sync_client=True) as client:
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
    with api_client(sync_client=True) as client:
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
    """Create the batch's limits and the crash automation where absent, so a run started from the UI or
    a schedule works on a server nobody bootstrapped; what an operator changed on the server is left alone."""
    outcome = {name: create_limit_if_absent(name, size) for name, size in _batch_limits(settings).items()}
    outcome[CRASH_AUTOMATION] = ensure_crash_automation(settings, update=False)
    return outcome


CRASH_AUTOMATION = "contentforge: crash flow runs without heartbeats"
"""Name of the automation that marks a flow run Crashed when its process stops sending heartbeats."""

_ALIVE = "prefect.flow-run.heartbeat"
_RUN_STARTED = {"prefect.flow-run.Running", "prefect.flow-run.Retrying"}
_RUN_ENDED = {
    f"prefect.flow-run.{name}" for name in ("Completed", "Failed", "Cancelled", "Crashed", "Suspended")
}
"""A run that ended (or was suspended: its process exits on purpose) sends no more heartbeats."""


def crash_automation(settings: Settings) -> AutomationCore:
    """Prefect's documented zombie-run automation: a flow run that was Running or sent a heartbeat and
    then sends neither a heartbeat nor an end state for ``crash_after_s`` is marked Crashed.

    A process killed with ``kill -9`` (or a machine that died) runs no hook and reports nothing, so
    without this its run, and the in-process GPU-stage subflow with it, would stay Running forever.
    ``crash_after_s`` spans several heartbeat periods (``flow_heartbeat_s``) and Prefect's own default
    period (180 s), so a live run is never crashed for one late heartbeat.
    """
    return AutomationCore(
        name=CRASH_AUTOMATION,
        description=(
            f"Marks a flow run Crashed when it sent no heartbeat for {settings.crash_after_s} s "
            f"(ContentForge processes send one every {settings.flow_heartbeat_s} s). "
            "Created by `contentforge bootstrap`; CONTENTFORGE_CRASH_AFTER_S sets the window."
        ),
        enabled=True,
        trigger=EventTrigger(
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            after={_ALIVE, *_RUN_STARTED},
            expect={_ALIVE, *_RUN_ENDED},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=settings.crash_after_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"No heartbeat for {settings.crash_after_s} s: the process running this flow run "
                    "died or lost the server (marked by ContentForge's crash automation)."
                ),
            )
        ],
    )


def _same_automation(a: AutomationCore, b: AutomationCore) -> bool:
    """Same trigger, actions and description (sets compared as sets; the trigger's own id ignored)."""
    fields = {"description", "enabled", "trigger", "actions"}
    exclude = {"trigger": {"id"}}
    return a.model_dump(include=fields, exclude=exclude) == b.model_dump(include=fields, exclude=exclude)


def ensure_crash_automation(
    settings: Settings, *, update: bool = True
) -> Literal["created", "updated", "unchanged"]:
    """Make the crash automation exist (and, with ``update``, match the settings) exactly once.

    Automation names are not unique on the server, so two processes bootstrapping at once may both
    create it; each then keeps the one with the lowest id and deletes the rest, so they agree.
    """
    wanted = crash_automation(settings)
    with api_client(sync_client=True) as client:
        existing = client.read_automations_by_name(CRASH_AUTOMATION)
        if not existing:
            client.create_automation(wanted)
            existing = client.read_automations_by_name(CRASH_AUTOMATION)
            outcome: Literal["created", "updated", "unchanged"] = "created"
        else:
            outcome = "unchanged"
        keep, *duplicates = sorted(existing, key=lambda automation: str(automation.id))
        for duplicate in duplicates:
            delete_automation_if_present(client, duplicate.id)
        if outcome == "unchanged" and update and not _same_automation(keep, wanted):
            client.update_automation(keep.id, wanted)
            outcome = "updated"
    return outcome


def delete_automation_if_present(client: SyncPrefectClient, automation_id: UUID) -> None:
    """Delete an automation that another bootstrapping process may have deleted a moment ago.

    The client raises its HTTP error for the server's 404 before its own 404 check runs, so three
    flows starting together on a fresh server failed with "Automation not found" here.
    """
    try:
        client.delete_automation(automation_id)
    except ObjectNotFound:
        pass
    except PrefectHTTPStatusError as error:
        if error.response.status_code != 404:
            raise


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
    with api_client(sync_client=True) as client:
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
    with api_client(sync_client=True) as client:
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
    outcome[f"automation {CRASH_AUTOMATION}"] = ensure_crash_automation(settings)
    for role, worker_type in (("cpu", "process"), ("gpu", gpu_worker_type)):
        pool = settings.cpu_pool if role == "cpu" else settings.gpu_pool
        outcome[f"pool {pool}"] = ensure_work_pool(pool, worker_type, base_job_template(role, worker_type))
        for queue, priority in WORK_QUEUES:
            outcome[f"queue {pool}/{queue}"] = ensure_work_queue(pool, queue, priority)
    return outcome
