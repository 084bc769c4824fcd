"""``contentforge jobs``: list, show, cancel and watch the flow runs ContentForge starts.

The same view as ``/api/v1/jobs`` (``contentforge_api.jobs.JobStore``) read straight from the
Prefect server and the database; ``watch`` follows the same events as ``/jobs/{id}/stream`` with a
progress bar. These commands never start a Prefect server: with none running there are no jobs.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from contentforge_cli import context
from contentforge_cli.context import console, fail

if TYPE_CHECKING:
    from contentforge_api.jobs import Job, JobStore

app = typer.Typer(
    help="Jobs: every flow run ContentForge starts (batches, research, topics...).", no_args_is_help=True
)


def _store() -> JobStore:
    """The job store on the configured Prefect server (PREFECT_API_URL, else the local server)."""
    from contentforge_api.jobs import JobStore
    from contentforge_api.launcher import BatchLauncher
    from contentforge_cli.server import api_url_for, is_healthy

    settings = context.settings()
    url = os.environ.get("PREFECT_API_URL") or api_url_for("127.0.0.1", settings.prefect_port)
    if not is_healthy(url):
        fail(
            f"no Prefect server answers at {url}: start one (`contentforge server start`) "
            "or set PREFECT_API_URL"
        )
    return JobStore(BatchLauncher(settings.batch_deployment_name, api_url=url), context.services().sessions)


def _job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail(f"job id must be a flow run id (a UUID), not {value!r}")


def _run(coroutine: Any) -> Any:
    """Run a store call; what it refuses (unknown job, wrong state, Prefect down) is one line."""
    from contentforge_api.jobs import InputRefused, JobConflict, JobNotFound
    from contentforge_api.launcher import PrefectRefused, PrefectUnavailable

    try:
        return asyncio.run(coroutine)
    except (JobNotFound, JobConflict, InputRefused, PrefectUnavailable, PrefectRefused) as exc:
        fail(str(exc))


def _percent(job: Job) -> str:
    return "" if job.progress is None else f"{job.progress:.0f}%"


@app.command("list")
def jobs_list(
    type: Annotated[
        list[str] | None, typer.Option("--type", help="batch, single, research, topics...")
    ] = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="running, completed, failed...")
    ] = None,
    persona: Annotated[str | None, typer.Option(help="Persona id.")] = None,
    brand: Annotated[str | None, typer.Option(help="Brand id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Jobs newest first."""
    from contentforge_api.jobs import JOB_TYPE_VALUES, STATUSES

    for value, allowed, name in ((type, JOB_TYPE_VALUES, "type"), (status, STATUSES, "status")):
        unknown = [v for v in value or [] if v not in allowed]
        if unknown:
            fail(f"unknown {name} {unknown[0]!r}; one of {', '.join(allowed)}")
    page = _run(
        _store().page(
            types=type or (), statuses=status or (), persona=persona, brand=brand, limit=limit, offset=offset
        )
    )
    table = Table()
    # The id is what `jobs show|cancel|watch` take: never shortened, however narrow the terminal.
    table.add_column("id", no_wrap=True, min_width=36)
    for header in ("type", "subject", "status", "progress", "started", "cost $"):
        table.add_column(header)
    for job in page.jobs:
        subject = job.subject.batch or job.subject.persona or job.subject.brand or job.subject.topic or ""
        table.add_row(
            job.id,
            job.type,
            subject,
            job.status,
            _percent(job),
            job.started.strftime("%Y-%m-%d %H:%M:%S") if job.started else "",
            f"{job.cost_usd:.4f}",
        )
    console.print(table)
    more = f"; more with --offset {page.next_offset}" if page.next_offset is not None else ""
    console.print(f"{len(page.jobs)} job(s){more}")


@app.command("show")
def jobs_show(job_id: Annotated[str, typer.Argument(help="Job (flow run) id.")]) -> None:
    """One job in full (JSON)."""
    job = _run(_store().get(_job_id(job_id)))
    console.print_json(json.dumps(job.model_dump(mode="json")))


@app.command("cancel")
def jobs_cancel(job_id: Annotated[str, typer.Argument(help="Job (flow run) id.")]) -> None:
    """Cancel a job through Prefect; its batch keeps what it finished and resumes with its batch id."""
    job = _run(_store().cancel(_job_id(job_id)))
    console.print(Text(f"{job.id}: {job.status}"))
    if job.subject.batch and job.type in ("batch", "single"):
        resume = f"contentforge produce {job.subject.persona} --batch-id {job.subject.batch}"
        console.print(Text(f"resume later with: {resume}"))


@app.command("watch")
def jobs_watch(job_id: Annotated[str, typer.Argument(help="Job (flow run) id.")]) -> None:
    """Follow a job live (the API's event stream) with a progress bar, until it ends."""
    from contentforge_api.job_events import Cursor, job_events

    store = _store()
    ident = _job_id(job_id)
    first = _run(store.get(ident))
    ended: dict[str, Any] = {}

    async def follow(progress: Progress, bar: Any) -> None:
        async for chunk in job_events(store, ident, Cursor(), heartbeat_s=3600):
            event, data = _parse(chunk)
            if event == "progress":
                progress.update(
                    bar, completed=data["progress"], description=data.get("message") or first.type
                )
            elif event == "state":
                progress.console.print(Text(f"state: {data['name']} {data.get('message') or ''}".rstrip()))
            elif event == "piece":
                progress.console.print(Text(f"piece {data['piece_id']}: {data['status']}"))
            elif event == "end":
                ended.update(data)

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(first.type, total=100, completed=first.progress or 0)
        _run(follow(progress, bar))
    status = ended.get("status", "unknown")
    console.print(Text(f"{ident}: {status}" + (f" ({ended['error']})" if ended.get("error") else "")))
    if status != "completed":
        raise typer.Exit(code=1)


def _parse(chunk: bytes) -> tuple[str | None, dict[str, Any]]:
    event, data = None, ""
    for line in chunk.decode().splitlines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data += line.removeprefix("data: ")
    return event, json.loads(data) if data else {}
