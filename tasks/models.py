"""Installing a model from a hub: the download is the slow, retryable part, so it is a task.

Retried on hub trouble (429, 5xx, a connection broken more often than ``downloads`` resumes it: a rerun
downloads again), never on bad input (a pickle, an NSFW model, a hash mismatch, a taken name, another
install of the same name running), which would fail the same way again.
"""

from __future__ import annotations

from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from contentforge.db.registry import ModelRegistry
from contentforge.errors import InvalidInput
from contentforge.models import service
from tasks import resources


def retry_hub_trouble(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    try:
        state.result()
    except InvalidInput:
        return False
    except Exception:
        return True
    return False


@task(
    name="install_model_files",
    task_run_name="install-{hub}-{ref}",
    retries=2,
    retry_delay_seconds=[15, 60],
    retry_condition_fn=retry_hub_trouble,
    timeout_seconds=6 * 3600,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def install_model_files(
    hub: str, ref: str, name: str | None = None, kind: str | None = None
) -> dict[str, Any]:
    """Download, verify, probe and register one model; returns its registry entry as JSON."""
    request = service.InstallRequest.checked(hub, ref, name, kind)
    installed = service.install(resources.settings(), ModelRegistry(resources.services().sessions), request)
    return {
        "name": installed.name,
        "kind": installed.kind,
        "family": installed.family,
        "family_reason": installed.family_reason,
        "sha256": installed.sha256,
        "size_bytes": installed.size_bytes,
        "path": installed.path,
        "source": f"{installed.source}:{installed.source_ref}",
    }
