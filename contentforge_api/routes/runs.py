"""Flow runs started through the API (or any other): state from Prefect, progress from its artifact."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from contentforge.redaction import redact
from contentforge_api.errors import ApiError
from contentforge_api.gallery import gallery_path
from contentforge_api.launcher import FlowRunNotFound, PrefectRefused, PrefectUnavailable
from contentforge_api.responses import AUTH, documented
from contentforge_api.schemas import RunOut
from contentforge_api.state import Reader, State

router = APIRouter(tags=["runs"])


@router.get(
    "/runs/{flow_run_id}", response_model=RunOut, name="get_run", responses=documented(AUTH, 404, 502, 503)
)
async def get_run(state: State, _identity: Reader, flow_run_id: uuid.UUID, request: Request) -> RunOut:
    """The run's state, its progress (percent, from the progress artifact) and its batch's piece counts."""
    try:
        view = await state.launcher.read(flow_run_id)
    except FlowRunNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    except PrefectUnavailable as exc:
        raise ApiError(503, str(exc), code="prefect_unavailable") from exc
    except PrefectRefused as exc:
        raise ApiError(502, str(exc), code="prefect_refused") from exc
    run = view.flow_run
    parameters = dict(run.parameters or {})
    batch_id = parameters.get("batch_id")
    batch_id = str(batch_id) if batch_id else None
    counts = state.queries.pieces_by_status(batch_id) if batch_id else None
    return RunOut(
        id=str(run.id),
        name=run.name,
        deployment_id=str(run.deployment_id) if run.deployment_id else None,
        state_type=run.state.type.value if run.state else None,
        state_name=run.state.name if run.state else None,
        state_message=run.state.message if run.state else None,
        tags=sorted(run.tags or []),
        parameters=redact(parameters),
        created=run.created,
        start_time=run.start_time,
        end_time=run.end_time,
        progress_percent=view.progress_percent,
        batch_id=batch_id,
        pieces_by_status=counts,
        gallery_url=gallery_path(state.settings, request, batch_id) if batch_id else None,
    )
