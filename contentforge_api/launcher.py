"""Start batch flow runs on the Prefect server and read their state: the API never generates itself.

``BatchLauncher.launch`` creates a flow run of the batch deployment with
``run_deployment(..., timeout=0)`` (the async form, ``arun_deployment``) and returns at once; a
worker of the deployment's pool picks the run up. A missing deployment or an unreachable server is
a ``PrefectUnavailable`` (HTTP 503) whose message says what to run. The launcher never falls back to
Prefect's ephemeral in-process server: a batch started there would never reach a worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import Artifact, FlowRun
from prefect.client.schemas.sorting import ArtifactSort
from prefect.deployments import arun_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

DEFAULT_DEPLOYMENT = "produce-content-batch/produce-content-batch"
PRIORITIES = ("high", "normal", "low")
"""What a job may ask for; ``high`` goes to the ``priority`` work queue, the others to ``default``."""


def work_queue_for(priority: str) -> str:
    """The work queue (prefect.yaml: every pool has ``priority`` and ``default``) a priority runs on."""
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {list(PRIORITIES)}, not {priority!r}")
    return "priority" if priority == "high" else "default"


class PrefectUnavailable(Exception):
    """The Prefect server cannot take the request (not configured, unreachable, deployment missing)."""


class DeploymentMissing(PrefectUnavailable):
    """The batch deployment does not exist on the server."""


class PrefectRefused(Exception):
    """The Prefect server answered with an error status (e.g. parameters its schema refuses)."""


class FlowRunNotFound(LookupError):
    pass


@dataclass(frozen=True)
class RunView:
    """A flow run and the latest value of its progress artifact (percent), if it has one yet."""

    flow_run: FlowRun
    progress_percent: float | None


def batch_tags(persona_id: str, batch_id: str, *extra: str) -> list[str]:
    """The tags every API-started run carries, so runs can be filtered by persona and batch in the UI."""
    return [f"persona:{persona_id}", f"batch:{batch_id}", *extra]


class BatchLauncher:
    """Creates and reads flow runs of the batch deployment on one Prefect server."""

    def __init__(self, deployment_name: str = DEFAULT_DEPLOYMENT, *, api_url: str | None = None) -> None:
        if "/" not in deployment_name.strip("/"):
            raise ValueError(f"deployment name must be 'flow-name/deployment-name', got {deployment_name!r}")
        self.deployment_name = deployment_name
        self.api_url = api_url

    def server_url(self) -> str | None:
        return self.api_url or PREFECT_API_URL.value() or None

    @asynccontextmanager
    async def client(self) -> AsyncIterator[PrefectClient]:
        """A client of this server; transport and HTTP errors become PrefectUnavailable/PrefectRefused."""
        url = self.server_url()
        if not url:
            raise PrefectUnavailable(
                "no Prefect server configured: set PREFECT_API_URL (or start the API with "
                "`contentforge api serve`, which starts or reuses the local server)"
            )
        client = PrefectClient(api=self.api_url) if self.api_url else get_client()
        try:
            async with client:
                yield client
        except (httpx.TransportError, OSError) as exc:
            raise PrefectUnavailable(
                f"the Prefect server at {url} does not answer ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPStatusError as exc:
            raise PrefectRefused(
                f"the Prefect server refused the request: {exc.response.status_code} "
                f"{exc.response.text[:300]}"
            ) from exc

    async def launch(
        self,
        parameters: Mapping[str, Any],
        *,
        tags: Iterable[str],
        idempotency_key: str | None = None,
        work_queue_name: str | None = None,
    ) -> FlowRun:
        """Create a flow run of the batch deployment and return it without waiting (``timeout=0``)."""
        return await self.launch_deployment(
            self.deployment_name,
            parameters,
            tags=tags,
            idempotency_key=idempotency_key,
            work_queue_name=work_queue_name,
            setting="CONTENTFORGE_BATCH_DEPLOYMENT_NAME",
        )

    async def launch_deployment(
        self,
        deployment_name: str,
        parameters: Mapping[str, Any],
        *,
        tags: Iterable[str],
        idempotency_key: str | None = None,
        work_queue_name: str | None = None,
        setting: str | None = None,
    ) -> FlowRun:
        """Create a flow run of any deployment (``flow/deployment``) on ``work_queue_name``; never waits."""
        async with self.client() as client:
            try:
                return await arun_deployment(
                    deployment_name,
                    client=client,
                    parameters=dict(parameters),
                    timeout=0,
                    tags=list(tags),
                    idempotency_key=idempotency_key,
                    work_queue_name=work_queue_name,
                    as_subflow=False,
                )
            except ObjectNotFound as exc:
                hint = f" or set {setting}" if setting else ""
                raise DeploymentMissing(
                    f"deployment {deployment_name!r} does not exist on the Prefect server at "
                    f"{self.server_url()}; deploy it (`contentforge deploy`, or `contentforge up`){hint}"
                ) from exc

    async def read(self, flow_run_id: UUID) -> RunView:
        """The flow run and its newest progress artifact value."""
        async with self.client() as client:
            try:
                flow_run = await client.read_flow_run(flow_run_id)
            except ObjectNotFound as exc:
                raise FlowRunNotFound(f"no flow run with id {flow_run_id}") from exc
            # A direct call: PrefectClient.read_artifacts sends explicit nulls for the flow-run and
            # task-run filters, which this server version refuses (and empty ones match nothing).
            response = await client.request(
                "POST",
                "/artifacts/filter",
                json={
                    "artifacts": {
                        "flow_run_id": {"any_": [str(flow_run_id)]},
                        "type": {"any_": ["progress"]},
                    },
                    "sort": ArtifactSort.UPDATED_DESC.value,
                    "limit": 1,
                },
            )
            artifacts = Artifact.model_validate_list(response.json())
        progress = None
        if artifacts and isinstance(artifacts[0].data, int | float):
            progress = float(artifacts[0].data)
        return RunView(flow_run, progress)
