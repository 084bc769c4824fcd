"""Jobs: one view over every flow run ContentForge starts, read from Prefect and from the database.

A job *is* a top-level flow run of one of ContentForge's flows; nothing about it is stored twice.
Prefect says what state it is in, when it started and ended, its parameters (so its subject: persona,
brand, batch, topic, post) and its progress (the run's ``progress`` artifact); the database says what
it cost so far (the cost ledger) and, for a batch, its summary and pieces. Why not a jobs table: a
second record of a run's state would disagree with Prefect's the first time a worker dies.

Cancellation asks Prefect (``Cancelling``): the worker that runs the job stops its process, and the
flow's ``on_cancellation`` hook (``tasks/run_hooks.py``) marks the batch, drops its queued generations
and gives its slots back. A run started in-process by the CLI has no worker to act on that, so it is
refused with a line saying so rather than left ``Cancelling`` for ever.

A batch job reads ``cancelled`` as soon as its work has stopped, not when Prefect gets there: the
batch flow notices ``Cancelling`` within a second (its watcher), stops its generations and marks its
batch ``cancelled`` with the lease released, while Prefect only sets the run ``Cancelled`` after its
runner has killed the process and run the hooks in a fresh interpreter (10 s and more on a loaded
machine). So a run Prefect still calls ``Cancelling`` whose batch is ``cancelled`` and free is shown
``cancelled`` (``state_name`` keeps Prefect's word); a job of another type stays ``cancelling`` until
Prefect finishes.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterId,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterParentTaskRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import Artifact, FlowRun, State, StateType
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.input.run_input import keyset_from_paused_state
from prefect.states import Cancelled, Cancelling
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from contentforge.db.models import BatchORM, CostEntryORM, PersonaORM
from contentforge.db.sessions import SessionPolicy
from contentforge.domain.models import slugify
from contentforge.redaction import redact
from contentforge_api.launcher import BatchLauncher

JOB_TYPES: dict[str, str] = {
    "produce-content-batch": "batch",
    "generate-images": "images",
    "review-pieces": "review",
    "research-brand": "research",
    "create-personas": "personas",
    "plan-topics": "topics",
    "write-blog-post": "blog",
    "derive-social-posts": "social",
    "schedule-batch": "schedule",
    "publish-due": "publish",
    "collect-metrics": "metrics",
    "learn": "learn",
    "install-model": "models",
    "reply-to-message": "reply",
    "resend-replies": "replies",
}
"""Flow name -> job type. A flow ContentForge starts that is not named here is not listed as a job."""
STRATEGY_STEP_OF_TYPE = {
    "research": "research_brand",
    "personas": "propose_personas",
    "topics": "plan_topics",
    "blog": "write_blog_post",
    "social": "derive_social_posts",
}
"""Job type -> ``cost_entries.step`` of the strategy charges it makes (see ``db.costs``)."""

PREFECT_PAGE_LIMIT = 200
"""The most flow runs the Prefect server returns for one filter call."""

JobStatus = Literal[
    "scheduled", "pending", "running", "paused", "cancelling", "cancelled", "completed", "failed", "crashed"
]
STATUSES: tuple[str, ...] = JobStatus.__args__  # type: ignore[attr-defined]
FINAL_STATUSES = frozenset({"cancelled", "completed", "failed", "crashed"})
JobType = Literal[
    "batch",
    "single",
    "images",
    "review",
    "research",
    "personas",
    "topics",
    "blog",
    "social",
    "schedule",
    "publish",
    "metrics",
    "learn",
    "models",
    "reply",
    "replies",
]
JOB_TYPE_VALUES: tuple[str, ...] = JobType.__args__  # type: ignore[attr-defined]


class JobNotFound(LookupError):
    """No job with this id (no flow run, or a flow run that is not one of ContentForge's jobs)."""


class JobConflict(Exception):
    """The job cannot do this in its present state (cancel a finished job, answer a job not waiting)."""


class JobSubject(BaseModel):
    """What the job works on, from its parameters."""

    persona: str | None = None
    brand: str | None = None
    batch: str | None = None
    topic: str | None = None
    post: str | None = None


class Job(BaseModel):
    id: str
    name: str
    type: str = Field(description="batch, single (a one-piece batch), research, personas, topics, blog, ...")
    flow: str
    subject: JobSubject
    status: str = Field(
        description="scheduled, pending, running, paused (waiting for input), cancelling, ..."
    )
    state_name: str | None
    message: str | None = Field(None, description="The progress note, else the state's message.")
    progress: float | None = Field(
        None, ge=0, le=100, description="Percent done, from the progress artifact."
    )
    priority: str = Field(description="high (the priority work queue), normal or low")
    work_queue: str | None
    deployment_id: str | None
    tags: list[str]
    created: datetime | None
    started: datetime | None
    completed: datetime | None
    duration_s: float | None
    waiting_for_input: bool
    result: dict[str, Any] | None = Field(
        None, description="For a batch: its summary (counts, cost, stages)."
    )
    error: str | None
    cost_usd: float = Field(description="What the cost ledger holds for this job so far.")
    cancellable: bool


class JobPage(BaseModel):
    jobs: list[Job]
    limit: int
    offset: int
    next_offset: int | None


class JobGroupStats(BaseModel):
    key: str | None
    jobs: int
    by_status: dict[str, int]
    by_type: dict[str, int]
    failure_rate: float | None = Field(description="failed + crashed over finished jobs; None before any")
    mean_duration_s: float | None
    median_duration_s: float | None
    max_duration_s: float | None


class JobStats(BaseModel):
    group_by: str
    jobs_considered: int
    groups: list[JobGroupStats]


class PendingInput(BaseModel):
    job_id: str
    key: str
    description: str | None
    json_schema: dict[str, Any] = Field(serialization_alias="schema")


def status_of(run: FlowRun) -> str:
    if run.state is None:
        return "pending"
    return run.state.type.value.lower()


def job_type(run: FlowRun, flow_name: str) -> str:
    kind = JOB_TYPES.get(flow_name, flow_name)
    if kind == "batch" and "single" in (run.tags or []):
        return "single"
    return kind


def subject_of(run: FlowRun, flow_name: str) -> JobSubject:
    params = dict(run.parameters or {})
    tags = {tag.split(":", 1)[0]: tag.split(":", 1)[1] for tag in run.tags or [] if ":" in tag}

    def text(*names: str) -> str | None:
        for name in names:
            value = params.get(name)
            if isinstance(value, str) and value:
                return value
        return None

    brand = text("brand") or tags.get("brand")
    if flow_name == "research-brand":
        brand = brand or text("name")
    return JobSubject(
        persona=text("persona", "persona_id") or tags.get("persona"),
        brand=brand,
        batch=text("batch_id") or tags.get("batch"),
        topic=text("topic_id") or tags.get("topic"),
        post=text("post_id") or tags.get("post"),
    )


class JobStore:
    """Reads jobs from Prefect and their costs and summaries from the database; cancels and resumes."""

    def __init__(self, launcher: BatchLauncher, sessions: SessionPolicy) -> None:
        self.launcher = launcher
        self.sessions = sessions

    # --- reading -------------------------------------------------------------------------------

    async def page(
        self,
        *,
        types: Iterable[str] = (),
        statuses: Iterable[str] = (),
        persona: str | None = None,
        brand: str | None = None,
        batch: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobPage:
        """Newest first. Persona, brand and batch filter on the run's tags (every launcher sets them)."""
        types = set(types)
        flow_names = _flow_names_for(types)
        run_filter = self._run_filter(statuses, persona, brand, batch, single=types == {"single"})
        async with self.launcher.client() as client:
            runs = await _read_runs(client, flow_names, run_filter, limit=limit, offset=offset)
            # Whether a next page exists: one more run, asked separately because ``limit + 1`` would
            # exceed the server's PREFECT_PAGE_LIMIT (a 422 from Prefect) when ``limit`` is the maximum.
            more = len(runs) == limit and bool(
                await _read_runs(client, flow_names, run_filter, limit=1, offset=offset + limit)
            )
            jobs = [await self._job(client, run) for run in runs]
        if "batch" in types and "single" not in types:
            # No "without tag" filter in Prefect: a page of batches may hold fewer than ``limit``.
            jobs = [job for job in jobs if job.type == "batch"]
        return JobPage(jobs=jobs, limit=limit, offset=offset, next_offset=offset + limit if more else None)

    async def get(self, job_id: UUID) -> Job:
        async with self.launcher.client() as client:
            return await self._job(client, await self._run(client, job_id))

    async def stats(self, *, group_by: Literal["persona", "brand", "type"], window: int = 1000) -> JobStats:
        """Counts by status and type, durations and failure rate per persona, brand or job type.

        Over the newest ``window`` jobs: statistics over a bounded window cost one Prefect query and
        say how the system behaves now, not since it was installed.
        """
        async with self.launcher.client() as client:
            top_level = FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True))
            runs: list[FlowRun] = []
            while len(runs) < window:  # the server answers at most PREFECT_PAGE_LIMIT runs a call
                limit = min(PREFECT_PAGE_LIMIT, window - len(runs))
                page = await _read_runs(client, list(JOB_TYPES), top_level, limit=limit, offset=len(runs))
                runs += page
                if len(page) < limit:
                    break
            flow_names = await self._flow_names(client, runs)
        brands = self._brands_of_personas() if group_by == "brand" else {}
        groups: dict[str | None, list[tuple[FlowRun, str]]] = defaultdict(list)
        for run in runs:
            name = flow_names.get(run.flow_id, "")
            subject = subject_of(run, name)
            key: str | None
            if group_by == "type":
                key = job_type(run, name)
            elif group_by == "persona":
                key = subject.persona
            else:
                key = subject.brand or brands.get(subject.persona or "")
            groups[key].append((run, name))
        return JobStats(
            group_by=group_by,
            jobs_considered=len(runs),
            groups=[_group_stats(key, members) for key, members in sorted(groups.items(), key=_none_last)],
        )

    # --- acting --------------------------------------------------------------------------------

    async def cancel(self, job_id: UUID) -> Job:
        """Ask Prefect to cancel the job; its worker stops it and the hooks mark ContentForge's rows.

        A job still waiting to be picked up (scheduled, pending) or paused has no process to stop and is
        ``Cancelled`` directly; a running or paused job of a deployment goes ``Cancelling`` for its
        worker (a paused process still polls, and a plain ``Cancelled`` would let it time out into its
        default decision instead of stopping).
        """
        async with self.launcher.client() as client:
            run = await self._run(client, job_id)
            status = status_of(run)
            if status in FINAL_STATUSES:
                raise JobConflict(f"job {job_id} has already ended ({status})")
            if status == "cancelling":
                return await self._job(client, run)
            state: State[Any]
            if status == "scheduled":
                state = Cancelled(message="cancelled through the ContentForge API")
            elif run.deployment_id is None:
                raise JobConflict(
                    f"job {job_id} runs in the process that started it (the CLI), not on a worker: nothing "
                    "would act on a cancellation; stop that process (Ctrl+C)"
                )
            else:
                state = Cancelling(message="cancelled through the ContentForge API")
            await client.set_flow_run_state(job_id, state, force=True)
            return await self._job(client, await client.read_flow_run(job_id))

    async def pending_input(self, job_id: UUID) -> PendingInput:
        """The form a paused job waits for: its JSON schema, as the Prefect UI shows it."""
        async with self.launcher.client() as client:
            run = await self._run(client, job_id)
            if run.state is None or not run.state.is_paused():
                raise JobConflict(f"job {job_id} is not waiting for input (it is {status_of(run)})")
            keyset = keyset_from_paused_state(run.state)
            schema = await _run_input(client, job_id, keyset["schema"])
            if schema is None:
                # A run pauses first and saves its form just after: a moment when there is none yet.
                raise JobConflict(f"job {job_id} is paused without a form to fill in (yet)")
            description = await _run_input(client, job_id, keyset["description"])
        return PendingInput(
            job_id=str(job_id),
            key=keyset["response"],
            description=json.loads(description) if description else None,
            json_schema=json.loads(schema),
        )

    async def resume(self, job_id: UUID, run_input: dict[str, Any]) -> Job:
        """Resume a paused job with ``run_input``; Prefect checks it against the form's schema."""
        async with self.launcher.client() as client:
            run = await self._run(client, job_id)
            if run.state is None or not run.state.is_paused():
                raise JobConflict(f"job {job_id} is not waiting for input (it is {status_of(run)})")
            response = await client.resume_flow_run(job_id, run_input=run_input)
            if response.status.value != "ACCEPT":
                reason = getattr(response.details, "reason", None) or "refused by Prefect"
                raise InputRefused(str(reason))
            return await self._job(client, await client.read_flow_run(job_id))

    # --- helpers -------------------------------------------------------------------------------

    async def _run(self, client: PrefectClient, job_id: UUID) -> FlowRun:
        try:
            run = await client.read_flow_run(job_id)
        except ObjectNotFound as exc:
            raise JobNotFound(f"no job with id {job_id}") from exc
        names = await self._flow_names(client, [run])
        if names.get(run.flow_id) not in JOB_TYPES or run.parent_task_run_id is not None:
            raise JobNotFound(f"no job with id {job_id} (flow run {job_id} is not a ContentForge job)")
        return run

    async def _flow_names(self, client: PrefectClient, runs: list[FlowRun]) -> dict[UUID, str]:
        ids = list({run.flow_id for run in runs})
        if not ids:
            return {}
        body = {"flows": FlowFilter(id=FlowFilterId(any_=ids)).model_dump(mode="json"), "limit": len(ids)}
        response = await client.request("POST", "/flows/filter", json=body)
        return {UUID(flow["id"]): flow["name"] for flow in response.json()}

    def _run_filter(
        self,
        statuses: Iterable[str],
        persona: str | None,
        brand: str | None,
        batch: str | None,
        *,
        single: bool = False,
    ) -> FlowRunFilter:
        tags = ["single"] if single else []
        tags += [
            f"{kind}:{value}"
            for kind, value in (("persona", persona), ("brand", brand), ("batch", batch))
            if value
        ]
        states = [StateType(status.upper()) for status in statuses]
        return FlowRunFilter(
            parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True),
            tags=FlowRunFilterTags(all_=tags) if tags else None,
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)) if states else None,
        )

    async def _job(self, client: PrefectClient, run: FlowRun) -> Job:
        flow_name = (await self._flow_names(client, [run])).get(run.flow_id, "")
        progress, note = await read_progress(client, run.id)
        status = status_of(run)
        kind = job_type(run, flow_name)
        subject = subject_of(run, flow_name)
        if status == "completed":
            progress = 100.0
        started, ended = run.start_time, run.end_time
        duration = (
            (ended - started).total_seconds() if started and ended else run.total_run_time.total_seconds()
        )
        error = None
        if status in ("failed", "crashed", "cancelled") and run.state is not None:
            error = run.state.message or run.state.name
        result, cost, stopped = (
            self._batch_facts(subject.batch, run.id) if kind in ("batch", "single") else (None, 0.0, False)
        )
        message = note or (run.state.message if run.state else None)
        if status == "cancelling" and stopped:
            status = "cancelled"
            error = run.state.message if run.state else None
            message = "stopped: its batch is marked cancelled and released; Prefect is still ending the run"
        if kind in STRATEGY_STEP_OF_TYPE:
            cost = self._strategy_cost(STRATEGY_STEP_OF_TYPE[kind], subject, run)
        return Job(
            id=str(run.id),
            name=run.name,
            type=kind,
            flow=flow_name,
            subject=subject,
            status=status,
            state_name=run.state.name if run.state else None,
            message=message,
            progress=progress,
            priority=_priority(run),
            work_queue=run.work_queue_name,
            deployment_id=str(run.deployment_id) if run.deployment_id else None,
            tags=sorted(run.tags or []),
            created=run.created,
            started=started,
            completed=ended,
            duration_s=round(duration, 3) if started else None,
            waiting_for_input=bool(run.state and run.state.is_paused()),
            result=redact(result) if result else None,
            error=error,
            cost_usd=round(cost, 6),
            cancellable=status not in FINAL_STATUSES
            and (run.deployment_id is not None or status == "scheduled"),
        )

    def _batch_facts(self, batch_id: str | None, run_id: UUID) -> tuple[dict[str, Any] | None, float, bool]:
        """The batch's summary, what it cost, and whether run ``run_id`` stopped working on it.

        Stopped: the batch is ``cancelled``, its lease free, and this run was the last to hold it (a
        resume that has not taken the batch yet has not stopped anything).
        """
        if not batch_id:
            return None, 0.0, False
        with self.sessions.read() as session:
            batch = session.get(BatchORM, batch_id)
            cost = session.scalar(
                select(func.coalesce(func.sum(CostEntryORM.amount_usd), 0.0)).where(
                    CostEntryORM.batch_id == batch_id
                )
            )
            summary = dict(batch.summary) if batch is not None and batch.summary else None
            stopped = (
                batch is not None
                and batch.status == "cancelled"
                and batch.lease_owner is None
                and batch.flow_run_id == str(run_id)
            )
            if batch is not None:
                summary = {"batch_status": batch.status, **(summary or {})}
        return summary, float(cost or 0.0), stopped

    def _strategy_cost(self, step: str, subject: JobSubject, run: FlowRun) -> float:
        """Strategy charges carry their step and subject, not the run: those made while the run ran."""
        query = select(func.coalesce(func.sum(CostEntryORM.amount_usd), 0.0)).where(CostEntryORM.step == step)
        if run.start_time is None:
            return 0.0
        query = query.where(CostEntryORM.created_at >= run.start_time)
        if run.end_time is not None:
            query = query.where(CostEntryORM.created_at <= run.end_time)
        if subject.persona:
            query = query.where(CostEntryORM.persona_id == subject.persona)
        elif subject.brand:
            query = query.where(CostEntryORM.brand_id.in_({subject.brand, slugify(subject.brand)}))
        with self.sessions.read() as session:
            return float(session.scalar(query) or 0.0)

    def _brands_of_personas(self) -> dict[str, str]:
        with self.sessions.read() as session:
            rows = session.execute(
                select(PersonaORM.id, PersonaORM.brand_id).where(PersonaORM.brand_id.is_not(None))
            )
            return {persona: brand for persona, brand in rows if brand}


class InputRefused(ValueError):
    """Prefect refused the answer (it does not match the form's schema, or the pause timed out)."""


async def _run_input(client: PrefectClient, flow_run_id: UUID, key: str) -> str | None:
    """A flow run input by key, None when it does not exist."""
    try:
        return await client.read_flow_run_input(flow_run_id, key)
    except ObjectNotFound:
        return None
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise


async def _read_runs(
    client: PrefectClient, flow_names: list[str], run_filter: FlowRunFilter, *, limit: int, offset: int
) -> list[FlowRun]:
    """Flow runs of these flows, newest first.

    A direct call: ``PrefectClient.read_flow_runs`` sends explicit nulls for the filters it is not
    given, which this server version refuses (see ``launcher.read``).
    """
    body = {
        "flows": FlowFilter(name=FlowFilterName(any_=flow_names)).model_dump(mode="json", exclude_none=True),
        "flow_runs": run_filter.model_dump(mode="json", exclude_none=True),
        "sort": FlowRunSort.EXPECTED_START_TIME_DESC.value,
        "limit": limit,
        "offset": offset,
    }
    response = await client.request("POST", "/flow_runs/filter", json=body)
    return FlowRun.model_validate_list(response.json())


def _flow_names_for(types: Iterable[str]) -> list[str]:
    wanted = {"batch" if kind == "single" else kind for kind in types}
    return [name for name, kind in JOB_TYPES.items() if not wanted or kind in wanted]


def _priority(run: FlowRun) -> str:
    value = (run.parameters or {}).get("priority")
    if value in ("high", "normal", "low"):
        return str(value)
    return "high" if run.work_queue_name == "priority" else "normal"


async def read_progress(client: PrefectClient, flow_run_id: UUID) -> tuple[float | None, str | None]:
    """The newest value and note of the run's progress artifact (one query; none yet: None)."""
    # A direct call: PrefectClient.read_artifacts sends explicit nulls for the flow-run and task-run
    # filters, which this server version refuses (see launcher.read).
    response = await client.request(
        "POST",
        "/artifacts/filter",
        json={
            "artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}, "type": {"any_": ["progress"]}},
            "sort": ArtifactSort.UPDATED_DESC.value,
            "limit": 1,
        },
    )
    artifacts = Artifact.model_validate_list(response.json())
    if not artifacts or not isinstance(artifacts[0].data, int | float):
        return None, None
    return float(artifacts[0].data), artifacts[0].description


def _group_stats(key: str | None, members: list[tuple[FlowRun, str]]) -> JobGroupStats:
    statuses = Counter(status_of(run) for run, _ in members)
    types = Counter(job_type(run, name) for run, name in members)
    durations = [
        (run.end_time - run.start_time).total_seconds()
        for run, _ in members
        if run.start_time and run.end_time and status_of(run) in FINAL_STATUSES
    ]
    finished = sum(statuses[s] for s in FINAL_STATUSES)
    failures = statuses["failed"] + statuses["crashed"]
    return JobGroupStats(
        key=key,
        jobs=len(members),
        by_status=dict(sorted(statuses.items())),
        by_type=dict(sorted(types.items())),
        failure_rate=round(failures / finished, 4) if finished else None,
        mean_duration_s=round(statistics.fmean(durations), 3) if durations else None,
        median_duration_s=round(statistics.median(durations), 3) if durations else None,
        max_duration_s=round(max(durations), 3) if durations else None,
    )


def _none_last(item: tuple[str | None, Any]) -> tuple[bool, str]:
    return item[0] is None, item[0] or ""
