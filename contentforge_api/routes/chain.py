"""The strategy chain over the API: research → personas → topics → blog → social, each a job (202).

Each route checks what it names exists (a brand to propose personas for, a persona to plan for, a
topic to write about, a post to derive from) before anything is started, then creates a flow run of
the step's deployment (prefect.yaml) on the work queue of the asked ``priority`` and answers 202 with
the job. The approvals the flows pause for (personas, topics, blog posts) are answered with
``POST /api/v1/jobs/{id}/input`` (the Prefect UI's form; ``GET`` shows its schema).

Every route takes an ``Idempotency-Key``: the key is claimed in the database before the flow run is
created (``contentforge_api.replays``), so a retry, a concurrent duplicate or a retry on another API
process gets the first job back instead of starting the step twice. The flow run also carries a
Prefect idempotency key derived from the token, endpoint, key and body: an API process that died
between creating the run and keeping its answer leaves the key to a retry, which then gets the same
run back from Prefect rather than a second one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, HttpUrl

from contentforge.db import RecordNotFound
from contentforge.domain.models import Platform
from contentforge_api.auth import Identity
from contentforge_api.errors import ApiError
from contentforge_api.launcher import DeploymentMissing, PrefectRefused, PrefectUnavailable
from contentforge_api.priority import PRIORITY_FIELD, PRIORITY_REFUSED, Priority, check_priority
from contentforge_api.replays import IN_PROGRESS, replays, request_fingerprint
from contentforge_api.state import ApiState, State, Writer

router = APIRouter(tags=["strategy"])

Ref = Annotated[str, Path(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")]
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No bearer token, or one the API does not know"},
    403: {"description": f"The read-only token, or {PRIORITY_REFUSED}"},
    404: {"description": "What the step works on does not exist"},
    409: {"description": IN_PROGRESS},
    502: {"description": "The Prefect server refused the request"},
    503: {"description": "The Prefect server does not answer, or the step's deployment is missing"},
}
StepKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeat a request with the same key and body and get the first job back instead of a "
        "second run; the same key with another body is refused (422); while the first request is still "
        "answered a retry waits briefly, then gets 409. Kept per token for "
        "CONTENTFORGE_API_IDEMPOTENCY_TTL_S.",
    ),
]


class JobLaunched(BaseModel):
    job_id: str
    flow_run_name: str
    deployment: str
    work_queue: str
    priority: str
    parameters: dict[str, Any]
    job_url: str
    stream_url: str
    input_url: str = Field(description="Where the step's approval form is shown (GET) and answered (POST)")


class ResearchRequest(BaseModel):
    urls: list[HttpUrl] = Field(min_length=1, max_length=20, description="The brand's public pages")
    priority: Priority = PRIORITY_FIELD


class PersonasRequest(BaseModel):
    count: int = Field(6, ge=3, le=12, description="Candidates to propose; 3-6 are kept at the approval")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    timeout_s: int | None = Field(
        None, ge=10, le=7 * 24 * 3600, description="Approval wait (default: setting)"
    )
    priority: Priority = PRIORITY_FIELD


class TopicsRequest(BaseModel):
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
    brand: str | None = Field(None, max_length=120)
    count: int = Field(4, ge=1, le=31)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    timeout_s: int | None = Field(None, ge=10, le=7 * 24 * 3600)
    priority: Priority = PRIORITY_FIELD


class BlogRequest(BaseModel):
    target_pages: int = Field(5, ge=4, le=10)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    timeout_s: int | None = Field(None, ge=10, le=7 * 24 * 3600)
    priority: Priority = PRIORITY_FIELD


class SocialRequest(BaseModel):
    platforms: list[Platform] | None = Field(
        None, max_length=len(Platform), description="Default: the persona's"
    )
    priority: Priority = PRIORITY_FIELD


@dataclass(frozen=True)
class _Step:
    """What identifies one chain request for its ``Idempotency-Key``: who sent which body where."""

    request: Request
    identity: Identity
    key: str | None
    body: BaseModel


async def _start(
    state: ApiState,
    step: _Step,
    flow: str,
    parameters: dict[str, Any],
    tags: list[str],
    priority: str,
) -> JobLaunched:
    queue = check_priority(state, priority)
    if step.key is None:
        return await _launch(state, step, flow, parameters, tags, priority, queue)
    kept = replays(step.request.app.state)
    scope = kept.scope(step.request, step.identity, step.key)
    answer = await kept.arun(
        scope, step.body, lambda: _launch(state, step, flow, parameters, tags, priority, queue), status=202
    )
    return answer if isinstance(answer, JobLaunched) else JobLaunched.model_validate(answer)


def _prefect_key(step: _Step) -> str | None:
    """Prefect's idempotency key of the run: one per token, endpoint, key and body (see the docstring)."""
    if step.key is None:
        return None
    fingerprint = request_fingerprint(step.body)
    seed = "\n".join((step.identity.name, step.request.method, step.request.url.path, step.key, fingerprint))
    return "chain:" + hashlib.sha256(seed.encode()).hexdigest()


async def _launch(
    state: ApiState,
    step: _Step,
    flow: str,
    parameters: dict[str, Any],
    tags: list[str],
    priority: str,
    queue: str,
) -> JobLaunched:
    deployment = f"{flow}/{flow}"
    parameters = {key: value for key, value in parameters.items() if value is not None}
    try:
        run = await state.launcher.launch_deployment(
            deployment,
            parameters,
            tags=["contentforge", "api", *tags, f"priority:{priority}"],
            idempotency_key=_prefect_key(step),
            work_queue_name=queue,
        )
    except DeploymentMissing as exc:
        raise ApiError(503, str(exc), code="deployment_missing") from exc
    except PrefectUnavailable as exc:
        raise ApiError(503, str(exc), code="prefect_unavailable") from exc
    except PrefectRefused as exc:
        raise ApiError(502, str(exc), code="prefect_refused") from exc
    job_url = str(step.request.url_for("get_job", job_id=str(run.id)))
    return JobLaunched(
        job_id=str(run.id),
        flow_run_name=run.name,
        deployment=deployment,
        work_queue=queue,
        priority=priority,
        parameters=dict(run.parameters or {}),
        job_url=job_url,
        stream_url=f"{job_url}/stream",
        input_url=f"{job_url}/input",
    )


async def _exists(find: Any, *args: Any) -> Any:
    try:
        return await run_in_threadpool(find, *args)
    except RecordNotFound as exc:
        raise ApiError(404, str(exc)) from exc


@router.post("/brands/{brand}/research", response_model=JobLaunched, status_code=202, responses=RESPONSES)
async def research_brand(
    state: State,
    identity: Writer,
    brand: Ref,
    body: ResearchRequest,
    request: Request,
    idempotency_key: StepKey = None,
) -> JobLaunched:
    """Research brand ``brand`` (its name) from its public pages: the brand DNA, saved under its id."""
    urls = [str(url) for url in body.urls]
    return await _start(
        state,
        _Step(request, identity, idempotency_key, body),
        "research-brand",
        {"name": brand, "urls": urls},
        [f"brand:{brand}"],
        body.priority,
    )


@router.post("/brands/{brand}/personas", response_model=JobLaunched, status_code=202, responses=RESPONSES)
async def create_personas(
    state: State,
    identity: Writer,
    brand: Ref,
    body: PersonasRequest,
    request: Request,
    idempotency_key: StepKey = None,
) -> JobLaunched:
    """Propose persona candidates for a researched brand; the job pauses for the selection."""
    brand_id, _, _ = await _exists(state.services.strategy.get_brand, brand)
    parameters = {"brand": brand_id, "count": body.count, "seed": body.seed, "timeout_s": body.timeout_s}
    return await _start(
        state,
        _Step(request, identity, idempotency_key, body),
        "create-personas",
        parameters,
        [f"brand:{brand_id}"],
        body.priority,
    )


@router.post("/personas/{persona}/topics", response_model=JobLaunched, status_code=202, responses=RESPONSES)
async def plan_topics(
    state: State,
    identity: Writer,
    persona: Ref,
    body: TopicsRequest,
    request: Request,
    idempotency_key: StepKey = None,
) -> JobLaunched:
    """Plan a persona's topics for a month; the job pauses for their approval."""
    found = await run_in_threadpool(state.repo.get_persona, persona)
    if found is None:
        raise ApiError(404, f"no persona {persona!r}")
    brand = body.brand
    if brand is not None:
        brand, _, _ = await _exists(state.services.strategy.get_brand, brand)
    parameters = {
        "persona_id": found.id,
        "month": body.month,
        "brand": brand,
        "count": body.count,
        "seed": body.seed,
        "timeout_s": body.timeout_s,
    }
    tags = [f"persona:{found.id}", *([f"brand:{brand}"] if brand else [])]
    return await _start(
        state, _Step(request, identity, idempotency_key, body), "plan-topics", parameters, tags, body.priority
    )


@router.post("/topics/{topic_id}/blog", response_model=JobLaunched, status_code=202, responses=RESPONSES)
async def write_blog_post(
    state: State,
    identity: Writer,
    topic_id: Ref,
    body: BlogRequest,
    request: Request,
    idempotency_key: StepKey = None,
) -> JobLaunched:
    """Write the blog post of a topic; the job pauses for the draft's approval."""
    topic = await _exists(state.services.strategy.get_topic, topic_id)
    parameters = {
        "topic_id": topic.id,
        "target_pages": body.target_pages,
        "seed": body.seed,
        "timeout_s": body.timeout_s,
    }
    tags = [f"topic:{topic.id}", f"persona:{topic.persona_id}"]
    return await _start(
        state,
        _Step(request, identity, idempotency_key, body),
        "write-blog-post",
        parameters,
        tags,
        body.priority,
    )


@router.post("/posts/{post_id}/social", response_model=JobLaunched, status_code=202, responses=RESPONSES)
async def derive_social_posts(
    state: State,
    identity: Writer,
    post_id: Ref,
    body: SocialRequest,
    request: Request,
    idempotency_key: StepKey = None,
) -> JobLaunched:
    """Derive platform posts from a blog post."""
    post = await _exists(state.services.strategy.get_blog_post, post_id)
    platforms = [platform.value for platform in body.platforms] if body.platforms else None
    tags = [f"post:{post.id}", f"persona:{post.persona_id}"]
    return await _start(
        state,
        _Step(request, identity, idempotency_key, body),
        "derive-social-posts",
        {"post_id": post.id, "platforms": platforms},
        tags,
        body.priority,
    )
