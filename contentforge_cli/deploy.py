"""Register the deployments of ``prefect.yaml`` with the Prefect API.

Why not ``prefect deploy --all``: with prefect 3.8 and the pinned ``fastapi<0.155``, the CLI creates
the first deployment and then crashes on its "is a worker online?" check (the client posts
``limit: null`` to ``/work_pools/{pool}/workers/filter`` and the server answers 422), so the rest are
never created. This module reads the same file and makes the same API calls the CLI makes for a
deployment: the flow (by its entrypoint), the parameter schema, pool, queue, tags, parameters,
schedules, concurrency limit and a pull step that sets the working directory to the checkout.
Re-running updates each deployment in place (same flow and name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.schedules import construct_schedule
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).resolve().parents[1]


def _schedules(entries: list[dict[str, Any]] | None) -> list[DeploymentScheduleCreate]:
    schedules = []
    for entry in entries or []:
        spec = {key: entry[key] for key in ("cron", "interval", "rrule", "timezone") if key in entry}
        schedules.append(
            DeploymentScheduleCreate(schedule=construct_schedule(**spec), active=entry.get("active", True))
        )
    return schedules


def apply_deployments(
    prefect_file: Path = ROOT / "prefect.yaml", checkout: Path = ROOT, names: list[str] | None = None
) -> dict[str, str]:
    """Create or update every deployment of ``prefect_file`` (or those in ``names``); name -> id."""
    config = yaml.safe_load(prefect_file.read_text())
    pull = [{"prefect.deployments.steps.set_working_directory": {"directory": str(checkout.resolve())}}]
    created: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for spec in config["deployments"]:
            if names and spec["name"] not in names:
                continue
            flow = load_flow_from_entrypoint(str(checkout / spec["entrypoint"]))
            flow_id = client.create_flow_from_name(flow.name)
            pool = spec.get("work_pool") or {}
            deployment_id = client.create_deployment(
                flow_id=flow_id,
                name=spec["name"],
                description=spec.get("description"),
                tags=list(spec.get("tags") or []),
                parameters=dict(spec.get("parameters") or {}),
                parameter_openapi_schema=parameter_schema(flow).model_dump_for_openapi(),
                enforce_parameter_schema=True,
                entrypoint=spec["entrypoint"],
                path=str(checkout.resolve()),
                pull_steps=pull,
                work_pool_name=pool.get("name"),
                work_queue_name=pool.get("work_queue_name"),
                job_variables=dict(pool.get("job_variables") or {}),
                concurrency_limit=spec.get("concurrency_limit"),
                schedules=_schedules(spec.get("schedules")),
            )
            created[f"{flow.name}/{spec['name']}"] = str(deployment_id)
    return created
