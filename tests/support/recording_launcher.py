"""TEST DOUBLE: a batch launcher that records launches instead of creating Prefect flow runs.

Used by the API fuzz test (``tests/test_api_fuzz.py``), which sends hundreds of generated requests
in-process: a flow run for each would only fill the Prefect server with runs no worker takes.
``RecordingLauncher.launch`` (and ``launch_deployment``, for any deployment) keep what they were
given and answer with a ``Scheduled`` flow run made up here; ``read`` answers for those runs and asks
the real server for any other id. Every other launcher method is the real one, against the test
session's Prefect server (``prefect_server`` fixture), so routes that read jobs read real state.

The real launcher is tested against a real Prefect server in ``tests/test_api.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prefect.client.schemas.objects import FlowRun, State, StateType

from contentforge_api.launcher import BatchLauncher, RunView


@dataclass(frozen=True)
class RecordedLaunch:
    deployment_name: str
    parameters: dict[str, Any]
    tags: list[str]
    idempotency_key: str | None
    options: dict[str, Any]


class RecordingLauncher(BatchLauncher):
    """TEST DOUBLE of ``BatchLauncher``: records launches, creates no flow run on the server."""

    def __init__(self, api_url: str | None = None) -> None:
        super().__init__(api_url=api_url)
        self.launches: list[RecordedLaunch] = []
        self._runs: dict[uuid.UUID, FlowRun] = {}
        self._by_key: dict[str, FlowRun] = {}

    async def launch(  # type: ignore[override]
        self,
        parameters: Mapping[str, Any],
        *,
        tags: Iterable[str],
        idempotency_key: str | None = None,
        **options: Any,
    ) -> FlowRun:
        return self._record(self.deployment_name, parameters, tags, idempotency_key, options)

    async def launch_deployment(
        self,
        deployment_name: str,
        parameters: Mapping[str, Any],
        *,
        tags: Iterable[str],
        idempotency_key: str | None = None,
        **options: Any,
    ) -> FlowRun:
        return self._record(deployment_name, parameters, tags, idempotency_key, options)

    def _record(
        self,
        deployment_name: str,
        parameters: Mapping[str, Any],
        tags: Iterable[str],
        idempotency_key: str | None,
        options: dict[str, Any],
    ) -> FlowRun:
        if idempotency_key is not None and idempotency_key in self._by_key:
            return self._by_key[idempotency_key]  # what Prefect does with a repeated key
        self.launches.append(
            RecordedLaunch(deployment_name, dict(parameters), list(tags), idempotency_key, options)
        )
        run = FlowRun(
            id=uuid.uuid4(),
            flow_id=uuid.uuid4(),
            name=f"recorded-{len(self.launches)}",
            parameters=dict(parameters),
            tags=list(tags),
            state=State(type=StateType.SCHEDULED, name="Scheduled"),
        )
        self._runs[run.id] = run
        if idempotency_key is not None:
            self._by_key[idempotency_key] = run
        return run

    async def read(self, flow_run_id: uuid.UUID) -> RunView:
        if flow_run_id in self._runs:
            return RunView(self._runs[flow_run_id], progress_percent=None)
        return await super().read(flow_run_id)
