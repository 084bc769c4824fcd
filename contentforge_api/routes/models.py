"""The model registry over HTTP: search the hubs, list and read installed models, install as a flow run.

``POST /models/install`` only checks the request and starts the ``install-model`` deployment (the
download runs on a worker, never inside the request); the answer names the flow run to follow.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, status
from pydantic import BaseModel, Field

from contentforge.db.registry import ModelRegistry
from contentforge.models import service
from contentforge.models.errors import HubError
from contentforge_api.errors import ApiError
from contentforge_api.launcher import DeploymentMissing, PrefectRefused, PrefectUnavailable
from contentforge_api.responses import AUTH, documented
from contentforge_api.state import ApiState, Reader, State, Writer

router = APIRouter(tags=["models"])
INSTALL_DEPLOYMENT = "install-model/install-model"
InstallKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeat an install with the same key and body and get the same flow run back (a retried "
        "request starts no second install); the same key with another body is refused (422).",
    ),
]
ModelName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,119}$", description="Registry name.")]


class HubModelOut(BaseModel):
    hub: str
    ref: str
    name: str
    kind: str
    base_model: str
    trigger_words: list[str]
    tags: list[str]
    rating: float | None
    downloads: int


class InstalledModelOut(BaseModel):
    name: str
    kind: str
    family: str
    family_reason: str
    source: str
    source_ref: str
    sha256: str
    size_bytes: int
    trigger_words: list[str]
    recommended_weight: float | None
    tags: list[str]
    description: str
    licence: str
    rating: float | None


class InstallIn(BaseModel):
    hub: Literal["civitai", "huggingface"]
    ref: str = Field(min_length=1, max_length=200, description="CivitAI version id or HF repo id.")
    name: str | None = Field(default=None, max_length=120)
    kind: Literal["checkpoint", "lora"] | None = None


class InstallStarted(BaseModel):
    flow_run_id: str
    flow_run_name: str
    deployment: str
    parameters: dict[str, str | None]


def _registry(state: ApiState) -> ModelRegistry:
    return ModelRegistry(state.services.sessions)


def _out(model: object) -> InstalledModelOut:
    return InstalledModelOut.model_validate(model, from_attributes=True)


@router.get(
    "/models/search",
    response_model=list[HubModelOut],
    responses=documented(AUTH, 502, s502="The hub answered with an error or could not be reached."),
)
def search_models(
    state: State,
    _identity: Reader,
    query: Annotated[str, Query(min_length=1, max_length=200)],
    hub: Literal["civitai", "huggingface"] = "civitai",
    kind: Literal["checkpoint", "lora"] | None = None,
    base_model: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[HubModelOut]:
    """Search a hub; NSFW-flagged models are hidden unless CONTENTFORGE_MODELS_SHOW_NSFW is set."""
    try:
        found = service.search(
            state.services.settings, hub, query, kind=kind, base_model=base_model, limit=limit
        )
    except HubError as exc:
        raise ApiError(502, str(exc), code="hub_error") from exc
    return [
        HubModelOut(
            hub=m.hub,
            ref=m.ref,
            name=m.name,
            kind=m.kind,
            base_model=m.base_model,
            trigger_words=list(m.trigger_words),
            tags=list(m.tags),
            rating=m.rating,
            downloads=m.downloads,
        )
        for m in found
    ]


@router.get("/models", response_model=list[InstalledModelOut], responses=documented(AUTH))
def list_models(
    state: State,
    _identity: Reader,
    kind: Literal["checkpoint", "lora"] | None = None,
    family: Literal["sd15", "sdxl", "flux"] | None = None,
) -> list[InstalledModelOut]:
    return [_out(m) for m in _registry(state).list_models(kind=kind, family=family)]


@router.get("/models/{name}", response_model=InstalledModelOut, responses=documented(AUTH, 404))
def get_model(state: State, _identity: Reader, name: ModelName) -> InstalledModelOut:
    found = _registry(state).get(name)
    if found is None:
        raise ApiError(404, f"no installed model named {name!r}")
    return _out(found)


@router.post(
    "/models/install",
    response_model=InstallStarted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=documented(
        AUTH, 502, 503, s503="The Prefect server or the install-model deployment is not available."
    ),
)
async def install_model(
    state: State, _identity: Writer, body: InstallIn, idempotency_key: InstallKey = None
) -> InstallStarted:
    """Check the request, then start the install-model flow run and return at once (202).

    With an ``Idempotency-Key``, Prefect hands back the first run of that key instead of starting a
    second install (the install flow also refuses a second concurrent install of one name).
    """
    request = service.InstallRequest.checked(body.hub, body.ref, body.name, body.kind)  # 422 in one line
    parameters = {"hub": request.hub, "ref": request.ref, "name": request.name, "kind": request.kind}
    sent = {k: v for k, v in parameters.items() if v is not None}
    try:
        run = await state.launcher.launch_deployment(
            INSTALL_DEPLOYMENT,
            sent,
            tags=["contentforge", "api", "install-model"],
            idempotency_key=idempotency_key,
        )
    except DeploymentMissing as exc:
        raise ApiError(503, str(exc), code="deployment_missing") from exc
    except PrefectUnavailable as exc:
        raise ApiError(503, str(exc), code="prefect_unavailable") from exc
    except PrefectRefused as exc:
        raise ApiError(502, str(exc), code="prefect_refused") from exc
    first = {k: v for k, v in (run.parameters or {}).items() if k in parameters and v is not None}
    if idempotency_key is not None and first != sent:
        raise ApiError(
            422,
            "this Idempotency-Key was already used with a different install request; send a new key for "
            "a new request (the same key and body return the first run)",
            code="idempotency_key_reused",
        )
    return InstallStarted(
        flow_run_id=str(run.id), flow_run_name=run.name, deployment=INSTALL_DEPLOYMENT, parameters=parameters
    )


@router.delete(
    "/models/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=documented(AUTH, 404, 409, s409="A persona or CONTENTFORGE_IMAGE_MODEL uses the model."),
)
def remove_model(state: State, _identity: Writer, name: ModelName) -> None:
    """Unregister a model and delete its downloaded files; refused while something uses it."""
    from contentforge.models.install import delete_files

    registry = _registry(state)
    if registry.get(name) is None:
        raise ApiError(404, f"no installed model named {name!r}")
    users = service.models_in_use(registry.list_models(), state.repo.list_personas(), state.services.settings)
    if name in users:
        raise ApiError(409, f"{name} is used by {users[name]}; change that first")
    delete_files(registry.remove(name), state.services.settings.data_dir)
