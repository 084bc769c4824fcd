"""Jobs: list, show, statistics, cancel, live events (SSE) and answers to a paused job's form.

Every route reads or acts on Prefect through ``contentforge_api.jobs.JobStore``; what Prefect answers
becomes one status code documented here (404 unknown job, 409 not in a state for this, 422 a form
answer Prefect refused or a malformed event id, 502/503 Prefect refusing or unreachable).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Header, Query
from fastapi.responses import StreamingResponse
from fastapi.sse import format_sse_event
from pydantic import WithJsonSchema

from contentforge_api.errors import ApiError
from contentforge_api.job_events import EVENT_ID_PATTERN, BadCursor, Cursor, job_events
from contentforge_api.jobs import (
    STATUSES,
    InputRefused,
    Job,
    JobConflict,
    JobNotFound,
    JobPage,
    JobStats,
    JobType,
    PendingInput,
)
from contentforge_api.launcher import PrefectRefused, PrefectUnavailable
from contentforge_api.state import Reader, State, Writer

router = APIRouter(tags=["jobs"])
T = TypeVar("T")

PREFECT_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No bearer token, or one the API does not know"},
    403: {"description": "The token may not do this (or, --insecure-local: not a loopback client)"},
    502: {"description": "The Prefect server refused the request"},
    503: {"description": "The Prefect server is not configured or does not answer"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No ContentForge job with this id"}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "The job is not in a state that allows this"}
}

JobTypeParam = JobType  # one list of job types: contentforge_api.jobs
StatusParam = Literal[
    "scheduled", "pending", "running", "paused", "cancelling", "cancelled", "completed", "failed", "crashed"
]
assert set(StatusParam.__args__) == set(STATUSES)  # type: ignore[attr-defined]
SubjectId = Annotated[str | None, Query(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")]


async def _answer(call: Awaitable[T]) -> T:
    """Prefect's and the store's refusals as the API's status codes."""
    try:
        return await call
    except JobNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    except JobConflict as exc:
        raise ApiError(409, str(exc)) from exc
    except InputRefused as exc:
        raise ApiError(422, f"Prefect refused the answer: {exc}", code="input_refused") from exc
    except PrefectUnavailable as exc:
        raise ApiError(503, str(exc), code="prefect_unavailable") from exc
    except PrefectRefused as exc:
        raise ApiError(502, str(exc), code="prefect_refused") from exc


@router.get("/jobs", response_model=JobPage, responses={**PREFECT_ERRORS})
async def list_jobs(
    state: State,
    _identity: Reader,
    type: Annotated[list[JobTypeParam] | None, Query(description="Job types (repeat for several)")] = None,
    status: Annotated[list[StatusParam] | None, Query(description="Statuses (repeat for several)")] = None,
    persona: SubjectId = None,
    brand: SubjectId = None,
    batch: SubjectId = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> JobPage:
    """Jobs newest first, with filters; ``next_offset`` is null on the last page."""
    return await _answer(
        state.jobs.page(
            types=type or (),
            statuses=status or (),
            persona=persona,
            brand=brand,
            batch=batch,
            limit=limit,
            offset=offset,
        )
    )


@router.get("/jobs/stats", response_model=JobStats, responses={**PREFECT_ERRORS})
async def job_stats(
    state: State,
    _identity: Reader,
    group_by: Literal["persona", "brand", "type"] = "persona",
    window: Annotated[int, Query(ge=1, le=2000, description="How many of the newest jobs to count")] = 1000,
) -> JobStats:
    """Counts by status and type, failure rate and durations per persona, brand or job type."""
    return await _answer(state.jobs.stats(group_by=group_by, window=window))


@router.get("/jobs/{job_id}", response_model=Job, responses={**NOT_FOUND, **PREFECT_ERRORS}, name="get_job")
async def get_job(state: State, _identity: Reader, job_id: uuid.UUID) -> Job:
    """One job: status, progress and message, timestamps, result or error, cost so far."""
    return await _answer(state.jobs.get(job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=Job,
    status_code=202,
    responses={**NOT_FOUND, **CONFLICT, **PREFECT_ERRORS},
)
async def cancel_job(state: State, _identity: Writer, job_id: uuid.UUID) -> Job:
    """Cancel through Prefect; finished pieces are kept, and a cancelled batch resumes with its batch id.

    Answers 202 with the job as it is now (``cancelling`` until its work has stopped: a batch reads
    ``cancelled`` as soon as its run released the batch, before Prefect's worker has ended the run); 409
    when it has already ended, or when it runs inside a CLI process that no worker can stop.
    """
    return await _answer(state.jobs.cancel(job_id))


@router.get(
    "/jobs/{job_id}/input",
    response_model=PendingInput,
    response_model_by_alias=True,
    responses={**NOT_FOUND, **CONFLICT, **PREFECT_ERRORS},
)
async def pending_input(state: State, _identity: Reader, job_id: uuid.UUID) -> PendingInput:
    """The form a paused job waits for (its JSON schema, the Prefect UI's form); 409 if none."""
    return await _answer(state.jobs.pending_input(job_id))


@router.post(
    "/jobs/{job_id}/input",
    response_model=Job,
    responses={
        **NOT_FOUND,
        **CONFLICT,
        422: {"description": "The answer does not match the form's schema (Prefect refused it)"},
        **PREFECT_ERRORS,
    },
)
async def answer_input(
    state: State,
    _identity: Writer,
    job_id: uuid.UUID,
    run_input: Annotated[dict[str, Any], Body(description="The form's fields, as GET shows its schema")],
) -> Job:
    """Resume the paused job with this answer, exactly as submitting the Prefect UI's form does."""
    return await _answer(state.jobs.resume(job_id, run_input))


@router.get(
    "/jobs/{job_id}/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: state, progress, piece, end (ids resume with Last-Event-ID)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **NOT_FOUND,
        422: {"description": "Last-Event-ID is not an id this stream sent"},
        **PREFECT_ERRORS,
    },
)
async def stream_job(
    state: State,
    _identity: Reader,
    job_id: uuid.UUID,
    last_event_id: Annotated[
        str | None,
        # A header is a string or absent: documented without the ``null`` branch of ``str | None``,
        # which a client (or a fuzzer) would otherwise send as the text "null".
        WithJsonSchema({"type": "string", "pattern": EVENT_ID_PATTERN}),
        Header(
            alias="Last-Event-ID",
            pattern=EVENT_ID_PATTERN,
            description="The id of the last event received: the stream resumes after it",
        ),
    ] = None,
    heartbeat_s: Annotated[float, Query(ge=1, le=60, description="Seconds between heartbeats")] = 10.0,
) -> StreamingResponse:
    """Live events of one job until its end; reconnect with ``Last-Event-ID`` to resume without repeats."""
    try:
        cursor = Cursor.decode(last_event_id)
    except BadCursor as exc:
        raise ApiError(422, str(exc), code="validation_error") from exc
    await _answer(state.jobs.get(job_id))  # 404 and 503 before the stream starts

    async def events() -> AsyncIterator[bytes]:
        try:
            async for chunk in job_events(state.jobs, job_id, cursor, heartbeat_s=heartbeat_s):
                yield chunk
        except (PrefectUnavailable, PrefectRefused) as exc:
            yield format_sse_event(event="error", data_str=json.dumps({"message": str(exc)}))

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
