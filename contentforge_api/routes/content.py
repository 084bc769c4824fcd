"""Content actions: start a batch or one piece (as Prefect flow runs), write hooks, check safety.

Nothing here generates an image inside a request. ``/content/batch`` and ``/content/generate``
validate the request completely (persona, platform, tier mix, seed, model settings, LoRA), then
create a flow run of the batch deployment and answer 202 with its id; ``GET /runs/{id}`` follows it.
``/content/generate`` is a one-piece batch: its piece id is known at once (``<batch id>-000``).

Hooks, hook variations, calls to action and safety checks run the configured text model or
moderator inside the request, so they need a token that may spend (``Spender``: never the read-only
token, refused before any provider is built), and every paid model call they make is written to the
cost ledger as it returns (``_RequestCharges``, step ``api_hooks``, one key per call). A retry sent
with the first request's ``Idempotency-Key`` gets the first answer back without a second model call
(``contentforge_api.replays``, kept in the database), so it is neither paid nor charged twice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar, cast

from fastapi import APIRouter, Depends, File, Form, Header, Path, Request, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from PIL import Image
from pydantic import BaseModel

from contentforge.batch import BatchRequest as ValidatedBatch
from contentforge.batch import piece_id_for, template_by_id, validate_batch_request
from contentforge.db.request_costs import RequestCostRepository
from contentforge.domain.models import Persona, TemplateTier
from contentforge.errors import BatchBusy, InvalidInput, UnknownPersona
from contentforge.images.loras import client_named_loras
from contentforge.images.uploads import UploadRecord, png_with_upload_provenance
from contentforge.moderation.remote_image import UnresolvableImageHost, image_fetcher
from contentforge.piece_requests import PieceRequest, check_piece_request, requested_tier_mix
from contentforge.piece_variations import record_variations, replaying_backend, variation_plan
from contentforge.research.errors import AddressRefused, FetchError, TooLarge, UnsupportedContent
from contentforge.research.fetch import FetchLimits
from contentforge.storage import content_key
from contentforge.text.hook_variations import BaseHook, HookVariator, calls_to_action
from contentforge.text.hooks import HookWriter
from contentforge.text.llm_hooks import LlmHookWriter
from contentforge.text.providers.costs import cost_detail
from contentforge.text.providers.factory import build_text_provider
from contentforge.text.providers.protocol import TextResult
from contentforge.validation import PERSONA_ID_PATTERN, PIECE_ID_PATTERN, check_batch_id
from contentforge_api.auth import Identity
from contentforge_api.errors import ApiError
from contentforge_api.gallery import gallery_path
from contentforge_api.launcher import DeploymentMissing, PrefectRefused, PrefectUnavailable, batch_tags
from contentforge_api.priority import PRIORITY_REFUSED, check_priority
from contentforge_api.replays import IN_PROGRESS, replays
from contentforge_api.responses import AUTH, documented
from contentforge_api.schemas import (
    BatchRequest,
    CallsToActionRequest,
    CallsToActionResponse,
    GenerateRequest,
    HookOut,
    HooksRequest,
    HooksResponse,
    HookVariationsRequest,
    HookVariationsResponse,
    LaunchResponse,
    SafetyCheckRequest,
    SafetyCheckResponse,
    UploadBatchResponse,
    UploadedImage,
    VariationOut,
    VariationsOut,
    VariationsRequest,
)
from contentforge_api.state import CONTENT_ROUTE, ApiState, Reader, State, Writer

router = APIRouter(tags=["content"])

MAX_IMAGE_PIXELS = 40_000_000
"""Refuse larger images before decoding them (a small PNG can expand to gigabytes)."""
IMAGE_FORMATS = {"PNG", "JPEG", "WEBP"}
MAX_UPLOADS = 20
"""Images per ``/content/upload-batch`` request (each is moderated inside the request)."""
_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeat a request with the same key and body and get the same flow run back; the same "
        "key with another body is refused (422).",
    ),
]
ReplayKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeat a request with the same key and body and get the first answer back, without "
        "calling the model again (so a retry is not paid or charged twice); the same key with another body "
        "is refused (422); while the first request is still answered a retry waits briefly, then gets "
        "409. Answers are kept in the database, per token, for CONTENTFORGE_API_IDEMPOTENCY_TTL_S (a day).",
    ),
]
VariedPiece = Annotated[str, Path(pattern=PIECE_ID_PATTERN, description="The parent piece's id.")]
T = TypeVar("T")
API_HOOKS_STEP = "api_hooks"
REQUEST_TAG = "request:"
"""Tag prefix of the request fingerprint an idempotent launch carries (see ``_request_tag``)."""


def _api_validation(validate: Callable[[], T]) -> Callable[[], T]:
    """``validate`` run as the API's validation: LoRAs are checked by shape, never on the filesystem."""

    def run() -> T:
        with client_named_loras():
            return validate()

    return run


def _request_tag(kind: str, body: BaseModel) -> str:
    """A tag naming what was asked: the endpoint and the parsed body (defaults filled in, keys sorted).

    Prefect hands back the first run of an ``Idempotency-Key``; the tag on that run tells whether it
    was started by the same request, so a key reused with another body is refused, not answered with
    a run the client did not ask for.
    """
    canonical = json.dumps({"kind": kind, "body": body.model_dump(mode="json")}, sort_keys=True)
    return REQUEST_TAG + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _persona(state: ApiState, ref: str) -> Persona:
    """By id or name only: the library would also accept a file path, which a client must never name."""
    found = state.repo.get_persona(ref)
    if found is None:
        raise UnknownPersona(f"unknown persona {ref!r}; create it with POST /api/v1/personas")
    return found


def require_spend(identity: Reader) -> Identity:
    """A caller that may run a possibly paid model or moderation call: never the read-only token."""
    if not identity.can_spend:
        raise ApiError(
            403,
            "this token is read-only: hooks, calls to action and safety checks run models that may be "
            "paid; use CONTENTFORGE_API_TOKEN",
        )
    return identity


Spender = Annotated[Identity, Depends(require_spend)]


class _RequestCharges:
    """The ``CallListener`` of one API request: each paid model call goes to the ledger as it returns.

    Keys are ``api:<request id>:<n>``, minted here once per request, so recording a call twice adds
    nothing while another request that calls the model again is charged again (it was paid again).
    The offline writer makes no calls and adds no entries: the ledger lists money spent.
    """

    def __init__(self, state: ApiState, endpoint: str, persona_id: str) -> None:
        self._store = RequestCostRepository(state.services.sessions)
        self._endpoint = endpoint
        self._persona_id = persona_id
        self.request_id = uuid.uuid4().hex
        self.calls = 0

    def __call__(self, result: TextResult) -> None:
        self.calls += 1
        self._store.charge_request_call(
            API_HOOKS_STEP,
            charge_key=f"api:{self.request_id}:{self.calls}",
            provider=result.provider,
            amount_usd=result.cost_usd,
            persona_id=self._persona_id,
            subject_id=self._endpoint,
            detail={**cost_detail(result), "request_id": self.request_id},
        )


def _replayed(
    request: Request, identity: Identity, key: str | None, body: BaseModel, answer: Callable[[], T]
) -> T:
    """``answer()``, or with an ``Idempotency-Key`` the answer kept for the same key and body."""
    if key is None:
        return answer()
    kept = replays(request.app.state)
    return cast(T, kept.run(kept.scope(request, identity, key), body, answer))


def _charged_writer(state: ApiState, charges: _RequestCharges) -> HookWriter:
    """The configured hook writer; a model-backed one is built on a chain that reports to ``charges``."""
    writer = state.hook_writer()
    if isinstance(writer, LlmHookWriter):
        return LlmHookWriter(build_text_provider(state.settings, on_call=charges))
    return writer


async def _launch(
    state: ApiState,
    request: Request,
    validated: ValidatedBatch,
    batch_id: str,
    idempotency_key: str | None,
    *,
    kind: str,
    body: BaseModel,
    priority: str,
    work_queue: str,
    extra: dict[str, Any] | None = None,
) -> LaunchResponse:
    parameters: dict[str, Any] = {
        "persona": validated.persona.id,
        "num_pieces": validated.num_pieces,
        "platform": validated.platform.value,
        "tier_mix": validated.tier_mix.model_dump(),
        "include_hooks": validated.include_hooks,
        "safety_check": validated.safety_check,
        "seed": validated.seed,
        "batch_id": batch_id,
        "priority": priority,
        **(extra or {}),  # only what a request set: runs without it keep their parameters as before
        # Only a batch that asked for a mode names it: runs without one keep their parameters as before.
        **({"mode": validated.mode} if validated.mode != "manual" else {}),
    }
    tags = batch_tags(validated.persona.id, batch_id, "api", kind, f"priority:{priority}")
    request_tag = _request_tag(kind, body) if idempotency_key else None
    if request_tag is not None:
        tags.append(request_tag)
    try:
        # Only high names its queue: normal and low keep the deployment's own (prefect.yaml: default),
        # so a deployment on another queue, or one with no work pool (Prefect refuses a queue for
        # those), still takes them.
        run = await state.launcher.launch(
            parameters,
            tags=tags,
            idempotency_key=idempotency_key,
            work_queue_name=work_queue if priority == "high" else None,
        )
    except DeploymentMissing as exc:
        raise ApiError(503, str(exc), code="deployment_missing") from exc
    except PrefectUnavailable as exc:
        raise ApiError(503, str(exc), code="prefect_unavailable") from exc
    except PrefectRefused as exc:
        raise ApiError(502, str(exc), code="prefect_refused") from exc
    if request_tag is not None and request_tag not in (run.tags or []):
        raise ApiError(
            422,
            "this Idempotency-Key was already used with a different request; send a new key for a new "
            "request (the same key and body return the first run)",
            code="idempotency_key_reused",
        )
    # With an idempotency key Prefect may hand back an earlier run: report that run's batch.
    run_parameters = dict(run.parameters or {})
    batch_id = str(run_parameters.get("batch_id") or batch_id)
    return LaunchResponse(
        flow_run_id=str(run.id),
        flow_run_name=run.name,
        deployment=state.launcher.deployment_name,
        batch_id=batch_id,
        piece_id=piece_id_for(batch_id, 0) if kind == "single" else None,
        state=run.state.type.value if run.state else None,
        tags=sorted(run.tags or tags),
        parameters=run_parameters,
        work_queue=run.work_queue_name or work_queue,
        run_url=str(request.url_for("get_run", flow_run_id=str(run.id))),
        gallery_url=gallery_path(state.settings, request, batch_id),
    )


def _check_batch_owner(state: ApiState, batch_id: str, persona: Persona) -> None:
    existing = state.queries.batch(batch_id)
    if existing is not None and existing["persona_id"] != persona.id:
        raise ApiError(409, f"batch {batch_id!r} belongs to persona {existing['persona_id']!r}")


@router.post(
    "/content/batch",
    response_model=LaunchResponse,
    status_code=status.HTTP_202_ACCEPTED,
    responses=documented(
        AUTH,
        409,
        413,
        502,
        503,
        s403=f"The read-only token, or {PRIORITY_REFUSED}.",
        s409="The batch id belongs to another persona's batch, or another run holds the batch.",
    ),
)
async def start_batch(
    state: State,
    _identity: Writer,
    body: BatchRequest,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> LaunchResponse:
    """Validate, then start the batch deployment; answers with the flow run id (never generates here)."""
    work_queue = check_priority(state, body.priority)

    def validate() -> ValidatedBatch:
        if body.batch_id is not None:
            check_batch_id(body.batch_id)  # the CLI's check and message
        persona = _persona(state, body.persona)
        if body.batch_id:
            _check_batch_owner(state, body.batch_id, persona)
            held = state.repo.batch_lease(body.batch_id)
            if held is not None and idempotency_key is None:
                # A replay with its Idempotency-Key gets its first run back instead (see _launch).
                raise ApiError(409, str(BatchBusy.held(body.batch_id, *held)))
        return validate_batch_request(
            state.repo,
            state.settings,
            persona=persona.id,
            num_pieces=body.num_pieces,
            platform=body.platform.value,
            tier_mix=body.tier_mix,
            seed=body.seed,
            include_hooks=body.include_hooks,
            safety_check=body.safety_check,
            batch_id=body.batch_id,
            mode=body.mode,
        )

    validated = await run_in_threadpool(_api_validation(validate))
    batch_id = body.batch_id or uuid.uuid4().hex
    return await _launch(
        state,
        request,
        validated,
        batch_id,
        idempotency_key,
        kind="batch",
        body=body,
        priority=body.priority,
        work_queue=work_queue,
    )


@router.post(
    "/content/generate",
    response_model=LaunchResponse,
    status_code=status.HTTP_202_ACCEPTED,
    responses=documented(AUTH, 413, 502, 503, s403=f"The read-only token, or {PRIORITY_REFUSED}."),
)
async def generate_one(
    state: State,
    _identity: Writer,
    body: GenerateRequest,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> LaunchResponse:
    """One piece as a one-piece batch run; ``piece_id`` is where it will appear.

    A ``template_id`` or your own ``prompt``, and ``steps``, ``guidance_scale``, ``width``, ``height``,
    ``scheduler`` and ``negative_prompt`` for this piece only, are checked for the configured model
    family before the run starts (422, one line) and passed to the run.
    """
    work_queue = check_priority(state, body.priority)

    def validate() -> tuple[ValidatedBatch, PieceRequest]:
        piece_request = check_piece_request(state.settings, body.template_id, **body.image_values())
        persona = _persona(state, body.persona)
        tier_mix = requested_tier_mix(body.template_id) or {
            tier.value: 1.0 if tier == body.tier else 0.0 for tier in TemplateTier
        }
        validated = validate_batch_request(
            state.repo,
            state.settings,
            persona=persona.id,
            num_pieces=1,
            platform=body.platform.value,
            tier_mix=tier_mix,
            seed=body.seed,
            include_hooks=body.include_hooks,
            safety_check=body.safety_check,
            mode=body.mode,
        )
        return validated, piece_request

    validated, piece_request = await run_in_threadpool(_api_validation(validate))
    batch_id = uuid.uuid4().hex
    return await _launch(
        state,
        request,
        validated,
        batch_id,
        idempotency_key,
        kind="single",
        body=body,
        priority=body.priority,
        work_queue=work_queue,
        extra=piece_request.flow_parameters(),
    )


@router.post(
    "/content/hooks",
    response_model=HooksResponse,
    responses=documented(AUTH, 409, 413, 503, s409=IN_PROGRESS),
)
def write_hooks(
    state: State, identity: Spender, body: HooksRequest, request: Request, idempotency_key: ReplayKey = None
) -> HooksResponse:
    """Hooks for a persona, template and platform from the configured writer (offline by default).

    A model-backed writer's calls are charged to the cost ledger (step ``api_hooks``).
    """
    return _replayed(request, identity, idempotency_key, body, lambda: _write_hooks(state, body))


def _write_hooks(state: ApiState, body: HooksRequest) -> HooksResponse:
    persona = _persona(state, body.persona)
    template = template_by_id(body.template_id)
    writer = _charged_writer(state, _RequestCharges(state, "content/hooks", persona.id))
    hooks = writer.write_hooks(persona, template, body.platform, count=body.count, seed=body.seed)
    return HooksResponse(
        writer=writer.name,
        persona_id=persona.id,
        template_id=template.id,
        platform=body.platform,
        hooks=[HookOut(**hook.model_dump(), caption=hook.caption) for hook in hooks],
    )


@router.post(
    "/content/hooks/variations",
    response_model=HookVariationsResponse,
    responses=documented(AUTH, 409, 413, 503, s409=IN_PROGRESS),
)
def hook_variations(
    state: State,
    identity: Spender,
    body: HookVariationsRequest,
    request: Request,
    idempotency_key: ReplayKey = None,
) -> HookVariationsResponse:
    """Rewrites of an existing hook in distinct styles, each within the platform's rules.

    With a model configured, the model rewrites it (its calls charged to the ledger); offline, or
    where a model's rewrite breaks a rule, the hook's own line is framed by rules. Variations that
    would repeat the original or each other are dropped, so fewer than ``count`` can come back.
    """
    return _replayed(request, identity, idempotency_key, body, lambda: _hook_variations(state, body))


def _hook_variations(state: ApiState, body: HookVariationsRequest) -> HookVariationsResponse:
    persona = _persona(state, body.persona)
    template = template_by_id(body.template_id)
    charges = _RequestCharges(state, "content/hooks/variations", persona.id)
    model_backed = isinstance(state.hook_writer(), LlmHookWriter)
    variator = HookVariator(build_text_provider(state.settings, on_call=charges) if model_backed else None)
    base = BaseHook(body.hook.text, body.hook.call_to_action, tuple(body.hook.hashtags))
    outcome = variator.variations(persona, template, body.platform, base, count=body.count, seed=body.seed)
    return HookVariationsResponse(
        source=outcome.source,
        persona_id=persona.id,
        template_id=template.id,
        platform=body.platform,
        variations=[HookOut(**hook.model_dump(), caption=hook.caption) for hook in outcome.hooks],
    )


@router.post(
    "/content/cta",
    response_model=CallsToActionResponse,
    responses=documented(AUTH, 409, 413, 503, s409=IN_PROGRESS),
)
def write_calls_to_action(
    state: State,
    identity: Spender,
    body: CallsToActionRequest,
    request: Request,
    idempotency_key: ReplayKey = None,
) -> CallsToActionResponse:
    """Calls to action for a persona, template and platform, from the configured hook writer.

    Up to ``count`` distinct ones: the offline writer's bank for the platform can hold fewer.
    """
    return _replayed(request, identity, idempotency_key, body, lambda: _calls_to_action(state, body))


def _calls_to_action(state: ApiState, body: CallsToActionRequest) -> CallsToActionResponse:
    persona = _persona(state, body.persona)
    template = template_by_id(body.template_id)
    writer = _charged_writer(state, _RequestCharges(state, "content/cta", persona.id))
    found = calls_to_action(writer, persona, template, body.platform, count=body.count, seed=body.seed)
    return CallsToActionResponse(
        writer=writer.name,
        persona_id=persona.id,
        template_id=template.id,
        platform=body.platform,
        calls_to_action=found,
    )


def _decode_base64(state: ApiState, data: str) -> Image.Image:
    limit = state.settings.api_max_image_bytes
    data = _DATA_URL.sub("", data.strip(), count=1)
    if len(data) > (limit + 2) // 3 * 4 + 4:
        raise ApiError(413, f"image is larger than {limit} bytes")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, "image_base64 is not valid base64", code="validation_error") from exc
    return _decode_bytes(state, raw, "image_base64")


def _decode_bytes(state: ApiState, raw: bytes, field: str) -> Image.Image:
    limit = state.settings.api_max_image_bytes
    if len(raw) > limit:
        raise ApiError(413, f"image is larger than {limit} bytes")
    try:
        image = Image.open(io.BytesIO(raw))
        if image.format not in IMAGE_FORMATS:
            raise ApiError(415, f"image must be PNG, JPEG or WebP, not {image.format}")
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ApiError(413, f"image has {width}x{height} pixels; at most {MAX_IMAGE_PIXELS} are accepted")
        image.load()
    except ApiError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(
            422, f"{field} is not a readable PNG, JPEG or WebP image", code="unreadable_image"
        ) from exc
    return image.convert("RGB")


def _fetch_image(state: ApiState, url: str) -> Image.Image:
    """The image at ``url``, through the research fetcher's protections (see ``remote_image``)."""
    settings = state.settings
    fetcher = image_fetcher(
        FetchLimits.from_settings(settings),
        settings.api_max_image_bytes,
        allow_private=settings.api_image_url_allow_private,
    )
    try:
        fetched = fetcher.fetch_image(url)
    except AddressRefused as exc:
        raise ApiError(422, str(exc), code="image_url_refused") from exc
    except UnresolvableImageHost as exc:
        raise ApiError(422, str(exc), code="image_url_unresolvable") from exc
    except TooLarge as exc:
        raise ApiError(
            413, f"image_url: the image is larger than {settings.api_max_image_bytes} bytes"
        ) from exc
    except UnsupportedContent as exc:
        raise ApiError(415, str(exc)) from exc
    except FetchError as exc:  # timeout, too many redirects, an HTTP error, a network error
        raise ApiError(502, f"image_url could not be fetched: {exc}", code="image_url_unreachable") from exc
    return _decode_bytes(state, fetched.data, "image_url")


@router.post(
    "/content/safety-check",
    response_model=SafetyCheckResponse,
    responses=documented(
        AUTH,
        409,
        413,
        415,
        502,
        503,
        s409=IN_PROGRESS,
        s502="`image_url` could not be fetched (timeout, too many redirects, an HTTP error status).",
    ),
)
def safety_check(
    state: State,
    identity: Spender,
    body: SafetyCheckRequest,
    request: Request,
    idempotency_key: ReplayKey = None,
) -> SafetyCheckResponse:
    """Moderate text and/or an image (base64 or a public ``image_url``) with the configured moderator.

    Nothing is stored. ``image_url`` is fetched with brand research's protections: public addresses
    only (a private one is 422 ``image_url_refused``), research's time and redirect limits,
    ``CONTENTFORGE_API_MAX_IMAGE_BYTES`` (413), image content types only (415).
    """
    return _replayed(request, identity, idempotency_key, body, lambda: _safety_check(state, body))


def _safety_check(state: ApiState, body: SafetyCheckRequest) -> SafetyCheckResponse:
    image = None
    if body.image_base64:
        image = _decode_base64(state, body.image_base64)
    elif body.image_url:
        image = _fetch_image(state, body.image_url)
    moderator = state.moderator()
    assessment = moderator.assess(image, body.all_texts)
    verdict = assessment.verdict
    return SafetyCheckResponse(
        verdict=verdict.verdict.value,
        scores={k: float(v) for k, v in verdict.scores.items()},
        reasons=list(verdict.reasons),
        backends=list(verdict.backends),
        needs_review=assessment.needs_review,
        review_reasons=list(assessment.review_reasons),
        accepted_platforms=list(moderator.policy.accepted_platforms(verdict.verdict)),
    )


@dataclass(frozen=True)
class _Upload:
    filename: str
    data: bytes
    image: Image.Image


async def _read_uploads(state: ApiState, files: list[UploadFile]) -> list[_Upload]:
    """Every file read and decoded (size, type and pixel limits) before anything is stored or moderated."""
    if not 1 <= len(files) <= MAX_UPLOADS:
        raise ApiError(422, f"send 1 to {MAX_UPLOADS} files, not {len(files)}", code="validation_error")
    limit = state.settings.api_max_image_bytes
    uploads: list[_Upload] = []
    for file in files:
        data = await file.read(limit + 1)
        name = (file.filename or "")[:200]
        if len(data) > limit:
            raise ApiError(413, f"file {name!r} is larger than {limit} bytes")
        image = await run_in_threadpool(_decode_bytes, state, data, f"file {name!r}")
        uploads.append(_Upload(name, data, image))
    return uploads


@router.post(
    "/content/upload-batch",
    response_model=UploadBatchResponse,
    status_code=status.HTTP_201_CREATED,
    responses=documented(AUTH, 413, 415, 503),
)
async def upload_batch(
    state: State,
    identity: Spender,
    request: Request,
    persona: Annotated[str, Form(pattern=PERSONA_ID_PATTERN, description="Persona id.")],
    files: Annotated[
        list[UploadFile],
        File(min_length=1, max_length=MAX_UPLOADS, description="PNG, JPEG or WebP images."),
    ],
    ai_generated: Annotated[
        bool, Form(description="Say so if the images are AI-generated; they are labelled accordingly.")
    ] = False,
) -> UploadBatchResponse:
    """Bring your own images: each is labelled, stored and moderated like a generated one.

    Every file is checked first (size, PNG/JPEG/WebP, pixels); then each is re-encoded as PNG with
    an XMP label, ``digitalCapture`` unless ``ai_generated`` says ``trainedAlgorithmicMedia``, and
    the upload record (who, when, the original bytes' SHA-256), stored content-addressed under the
    persona, and moderated by the configured moderator and policy. Uploads are not pieces: they are
    not in a batch, the review queue or the publishing ledger.
    """
    found = state.repo.get_persona(persona)
    if found is None or found.id != persona:
        raise UnknownPersona(f"unknown persona {persona!r}; create it with POST /api/v1/personas")
    uploads = await _read_uploads(state, files)
    items = await run_in_threadpool(
        _store_and_moderate, state, identity, found.id, uploads, ai_generated, request
    )
    return UploadBatchResponse(persona_id=found.id, ai_generated=ai_generated, items=items)


def _store_and_moderate(
    state: ApiState,
    identity: Identity,
    persona_id: str,
    uploads: list[_Upload],
    ai_generated: bool,
    request: Request,
) -> list[UploadedImage]:
    moderator = state.moderator()
    storage = state.storage()
    items: list[UploadedImage] = []
    for upload in uploads:
        record = UploadRecord(
            uploaded_by=identity.name,
            uploaded_at=datetime.now(UTC).isoformat(),
            original_sha256=hashlib.sha256(upload.data).hexdigest(),
            original_format=str(Image.open(io.BytesIO(upload.data)).format),
            original_filename=upload.filename,
            ai_generated=ai_generated,
        )
        png = png_with_upload_provenance(upload.image, record)
        assessment = moderator.assess(upload.image, [])
        verdict = assessment.verdict
        key = content_key(persona_id, f"upload-{hashlib.sha256(png).hexdigest()[:32]}", "png")
        stored = storage.put(
            key,
            png,
            "image/png",
            metadata={
                "persona": persona_id,
                "source": "upload",
                "digital-source-type": record.digital_source_type.rsplit("/", 1)[-1],
                "verdict": verdict.verdict.value,
            },
        )
        if state.settings.storage_backend == "local":
            url = (
                str(request.base_url).rstrip("/") + CONTENT_ROUTE + "/" + stored.key.removeprefix("content/")
            )
        else:
            url = storage.url_for(stored.key)
        items.append(
            UploadedImage(
                filename=upload.filename,
                key=stored.key,
                url=url,
                sha256=stored.sha256,
                original_sha256=record.original_sha256,
                digital_source_type=record.digital_source_type,
                verdict=verdict.verdict.value,
                scores={k: float(v) for k, v in verdict.scores.items()},
                reasons=list(verdict.reasons),
                needs_review=assessment.needs_review,
                review_reasons=list(assessment.review_reasons),
                accepted_platforms=list(moderator.policy.accepted_platforms(verdict.verdict)),
                written=stored.written,
            )
        )
    return items


# Registered last: "/content/hooks/variations" must match its own route before "/content/{piece_id}/...".
@router.post(
    "/content/{piece_id}/variations",
    response_model=LaunchResponse,
    status_code=status.HTTP_202_ACCEPTED,
    responses=documented(
        AUTH,
        404,
        409,
        413,
        502,
        503,
        s403=f"The read-only token, or {PRIORITY_REFUSED}.",
        s409=f"A run is making these variations now. {IN_PROGRESS}",
    ),
)
async def start_variations(
    state: State,
    _identity: Writer,
    piece_id: VariedPiece,
    body: VariationsRequest,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> LaunchResponse:
    """Variations of a stored piece as pieces of their own, made by a batch run (202 and the run).

    Each varies ``vary`` (seed, guidance, lora-weight or prompt) and replays the rest of the parent's
    record; they are stored, moderated and reviewed like any piece, and list the parent as
    ``parent_piece_id``. The same request again names the same variation batch, so a retry starts no
    second set (a finished one is not generated again).
    """
    work_queue = check_priority(state, body.priority)

    def validate() -> tuple[ValidatedBatch, str]:
        parent = state.repo.get_piece(piece_id)
        if parent is None:
            raise ApiError(404, f"no piece with id {piece_id!r}")
        if parent.record is None:
            raise InvalidInput(f"piece {piece_id} has no image yet (status {parent.status.value})")
        replaying_backend(state.settings, parent.record)  # another model could not replay it: 422
        plan = variation_plan(state.repo, piece_id, body.vary, body.count)  # reads and checks only
        validated = validate_batch_request(
            state.repo,
            state.settings,
            persona=plan.persona_id,
            num_pieces=len(plan.piece_ids),
            platform=plan.platform,
            tier_mix=plan.tier_mix,
            seed=plan.seed,
            batch_id=plan.batch_id,
        )
        held = state.repo.batch_lease(plan.batch_id)
        if held is not None and idempotency_key is None:
            # A run is making these variations now (a replay with its Idempotency-Key gets that run back).
            raise ApiError(409, str(BatchBusy.held(plan.batch_id, *held)))
        record_variations(state.repo, plan)  # only once the batch is known to be acceptable
        return validated, plan.batch_id

    validated, batch_id = await run_in_threadpool(_api_validation(validate))
    return await _launch(
        state,
        request,
        validated,
        batch_id,
        idempotency_key,
        kind="variations",
        body=body,
        priority=body.priority,
        work_queue=work_queue,
    )


@router.get(
    "/content/{piece_id}/variations",
    response_model=VariationsOut,
    responses=documented(AUTH, 404),
)
def list_variations(state: State, _identity: Reader, piece_id: VariedPiece) -> VariationsOut:
    """The piece's parent (if it is a variation) and the variations made of it, oldest first."""
    piece = state.repo.get_piece(piece_id)
    if piece is None:
        raise ApiError(404, f"no piece with id {piece_id!r}")
    return VariationsOut(
        piece_id=piece.id,
        parent_piece_id=piece.parent_piece_id,
        variations=[
            VariationOut(
                id=row.id,
                batch_id=row.batch_id,
                status=row.status,
                verdict=row.verdict.value if row.verdict else None,
                seed=row.seed,
                guidance_scale=row.guidance_scale,
                image_url=row.url,
            )
            for row in state.repo.variations_of(piece.id)
        ],
    )
