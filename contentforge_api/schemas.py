"""Request and response bodies of the REST API (they are the published OpenAPI schema).

Requests forbid unknown fields, so a typo (``num_piece``) is a 422 naming it rather than a silently
ignored option. Persona references are ids or names, never file paths: the API does not read files
named by a client.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contentforge.batch import MAX_PIECES
from contentforge.db import BatchStats
from contentforge.domain.models import (
    PERSONA_INTEREST_CHARS,
    PERSONA_INTERESTS_MAX,
    PERSONA_TRAIT_CHARS,
    PERSONA_TRAITS_MAX,
    TEMPLATE_ID_PATTERN,
    HookStyle,
    Persona,
    PieceStatus,
    Platform,
    Template,
    TemplateTier,
)
from contentforge.images.schedulers import SchedulerName
from contentforge.validation import BATCH_ID_MAX, BATCH_ID_PATTERN, TIER_MIX_MAX_CHARS
from contentforge_api.priority import PRIORITY_FIELD, Priority

PersonaRef = Annotated[
    str,
    Field(min_length=1, max_length=120, pattern=r"^[^/\\]+$", description="Persona id or name (not a path)."),
]
MAX_TEXTS = 20
MAX_TEXT_CHARS = 10_000
MAX_HOOK_CHARS = 2_200
NOT_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""A pattern (searched, not anchored) that a string fails when ``str.strip`` leaves nothing of it.

The class lists Python's whitespace (``str.isspace``) explicitly: ``\\S`` means less in JSON Schema's
ECMA regexes than in Python (``\\x1c``-``\\x1f`` are whitespace only to Python)."""
BASE64_IMAGE = (
    r"^(data:image/[A-Za-z0-9.+-]+;base64,)?"
    r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
)
"""``image_base64``: padded base64, optionally behind a ``data:image/...;base64,`` prefix."""
IANA_TIME_ZONES = sorted(available_timezones())
TierMixBody = (
    Annotated[dict[str, float], Field(max_length=2)]
    | Annotated[str, Field(max_length=TIER_MIX_MAX_CHARS)]
    | None
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonaIn(Persona):
    """A persona to create: ``Persona`` with the constraints its validators check written into the schema
    (no blank texts or list items, an IANA time zone), so clients and fuzzers see them."""

    name: str = Field(min_length=1, max_length=120, pattern=NOT_BLANK)
    niche: str = Field(min_length=1, max_length=60, pattern=NOT_BLANK)
    appearance: str = Field(min_length=1, max_length=600, pattern=NOT_BLANK)
    personality_traits: list[
        Annotated[str, Field(min_length=1, max_length=PERSONA_TRAIT_CHARS, pattern=NOT_BLANK)]
    ] = Field(min_length=1, max_length=PERSONA_TRAITS_MAX)
    interests: list[
        Annotated[str, Field(min_length=1, max_length=PERSONA_INTEREST_CHARS, pattern=NOT_BLANK)]
    ] = Field(min_length=1, max_length=PERSONA_INTERESTS_MAX)
    tone: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    timezone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description="An IANA time zone name, e.g. Europe/Berlin.",
        json_schema_extra={"enum": IANA_TIME_ZONES},
    )


class TemplateList(BaseModel):
    total: int
    items: list[Template]


class PersonaList(BaseModel):
    total: int
    items: list[Persona]


class BatchRequest(_Request):
    """Start a batch: validated completely before a flow run is created."""

    persona: PersonaRef
    num_pieces: int = Field(default=50, ge=1, le=MAX_PIECES)
    platform: Platform = Platform.instagram
    tier_mix: TierMixBody = Field(
        default=None, description='{"safe": 0.7, "suggestive": 0.3} or "safe=0.7,suggestive=0.3".'
    )
    seed: int = Field(default=0, ge=0, lt=2**32)
    include_hooks: bool = True
    safety_check: bool = True
    batch_id: str | None = Field(
        default=None,
        description="Resume this batch instead of starting a new one (or name a new one): "
        f"1 to {BATCH_ID_MAX} lowercase letters, digits and dashes. Checked by the same "
        "``contentforge.validation.check_batch_id`` as the CLI, so both refuse with the same message.",
        json_schema_extra={"pattern": BATCH_ID_PATTERN, "maxLength": BATCH_ID_MAX},
    )
    priority: Priority = PRIORITY_FIELD
    mode: Literal["manual", "auto", "assisted"] = Field(
        default="manual",
        description="manual: the settings' LoRAs and parameters (as before modes); auto: recommended per "
        "piece; assisted: recommended, then the run waits until the plan is accepted or edited "
        "(GET/POST /jobs/{id}/input) before generating.",
    )


class GenerateRequest(_Request):
    """One piece: a one-piece batch run on the batch deployment (never generated in the request).

    ``template_id`` picks the template (its tier replaces ``tier``) and ``prompt`` replaces the image
    prompt (the persona's trigger word goes first); the parameters replace the settings' for this piece
    only. Limits that depend on the configured model family (SD1.5 sides up to 1024 px, SDXL and Flux up
    to 2048; Flux: no negative prompt, scheduler ``flow_match_euler`` only) are checked before the run
    starts: 422 with one line.
    """

    persona: PersonaRef
    platform: Platform = Platform.instagram
    tier: TemplateTier = TemplateTier.safe
    seed: int = Field(default=0, ge=0, lt=2**32)
    include_hooks: bool = True
    safety_check: bool = True
    priority: Priority = PRIORITY_FIELD
    mode: Literal["manual", "auto", "assisted"] = Field(
        default="manual",
        description="As for a batch: auto recommends the LoRAs and parameters, assisted waits for the plan "
        "to be accepted or edited (GET/POST /jobs/{id}/input); parameters set here still win.",
    )
    template_id: str | None = Field(
        default=None, pattern=TEMPLATE_ID_PATTERN, description="A template id (GET /templates)."
    )
    prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=4000,
        pattern=NOT_BLANK,
        description="Your own image prompt instead of the template's.",
    )
    negative_prompt: str | None = Field(
        default=None, max_length=2000, description="Added to the safety negatives (SD1.5, SDXL)."
    )
    steps: int | None = Field(default=None, ge=1, le=150)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=30.0)
    width: int | None = Field(default=None, ge=64, le=2048, multiple_of=8)
    height: int | None = Field(default=None, ge=64, le=2048, multiple_of=8)
    scheduler: SchedulerName | None = Field(
        default=None, description="SD1.5 and SDXL: any but flow_match_euler; Flux: flow_match_euler."
    )

    def image_values(self) -> dict[str, Any]:
        """The per-piece generation values as ``piece_requests.check_piece_request`` takes them."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "width": self.width,
            "height": self.height,
            "scheduler": self.scheduler,
        }


class VariationsRequest(_Request):
    """Variations of a stored piece (``contentforge variations`` through the API)."""

    count: int = Field(default=4, ge=1, le=16, description="How many variations.")
    vary: Literal["seed", "guidance", "lora-weight", "prompt"] = Field(
        default="seed", description="What changes; everything else replays the parent's record."
    )
    priority: Priority = PRIORITY_FIELD


class VariationOut(BaseModel):
    id: str
    batch_id: str
    status: PieceStatus
    verdict: str | None
    seed: int
    guidance_scale: float | None
    image_url: str | None


class VariationsOut(BaseModel):
    piece_id: str
    parent_piece_id: str | None = Field(description="The piece this one is a variation of, if any.")
    variations: list[VariationOut] = Field(description="Pieces derived from this one, oldest first.")


class LaunchResponse(BaseModel):
    flow_run_id: str
    flow_run_name: str | None
    deployment: str
    batch_id: str
    piece_id: str | None = Field(default=None, description="The piece's id (POST /content/generate).")
    state: str | None
    tags: list[str]
    parameters: dict[str, Any]
    work_queue: str = Field(description="`priority` for priority high, else `default`.")
    run_url: str = Field(description="GET this for state and progress.")
    gallery_url: str


class HooksRequest(_Request):
    persona: PersonaRef
    template_id: str = Field(pattern=TEMPLATE_ID_PATTERN)
    platform: Platform = Platform.instagram
    count: int = Field(default=5, ge=1, le=10)
    seed: int = Field(default=0, ge=0, lt=2**32)


class HookOut(BaseModel):
    style: HookStyle
    text: str
    call_to_action: str
    hashtags: list[str]
    platform: Platform
    caption: str
    quality_gate: dict[str, Any] | None = Field(
        default=None,
        description="The quality gate's verdict (status passed, rewritten, regenerated, fallback or "
        "needs_review; issues); a needs_review hook is never published. Null: not gated.",
    )


class HooksResponse(BaseModel):
    writer: str
    persona_id: str
    template_id: str
    platform: Platform
    hooks: list[HookOut]


class BaseHookIn(_Request):
    """A hook as the client has it (e.g. one of ``/content/hooks``' answers)."""

    text: str = Field(min_length=1, max_length=MAX_HOOK_CHARS, pattern=NOT_BLANK)
    call_to_action: str = Field(default="", max_length=MAX_HOOK_CHARS)
    hashtags: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(
        default_factory=list, max_length=30, description="Without '#'."
    )


class HookVariationsRequest(_Request):
    persona: PersonaRef
    template_id: str = Field(pattern=TEMPLATE_ID_PATTERN)
    platform: Platform = Platform.instagram
    hook: BaseHookIn
    count: int = Field(default=5, ge=1, le=10)
    seed: int = Field(default=0, ge=0, lt=2**32)


class HookVariationsResponse(BaseModel):
    source: Literal["model", "rules"] = Field(
        description="`model` when a model wrote at least one variation, else `rules`."
    )
    persona_id: str
    template_id: str
    platform: Platform
    variations: list[HookOut]


class CallsToActionRequest(_Request):
    persona: PersonaRef
    template_id: str = Field(pattern=TEMPLATE_ID_PATTERN)
    platform: Platform = Platform.instagram
    count: int = Field(default=5, ge=1, le=10)
    seed: int = Field(default=0, ge=0, lt=2**32)


class CallsToActionResponse(BaseModel):
    writer: str
    persona_id: str
    template_id: str
    platform: Platform
    calls_to_action: list[str] = Field(description="Up to `count`, distinct, within the platform's rules.")


class SafetyCheckRequest(_Request):
    """Something to check: ``text``, ``texts``, and at most one image (``image_base64`` or ``image_url``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["text"], "properties": {"text": {"type": "string", "minLength": 1}}},
                {
                    "required": ["texts"],
                    "properties": {"texts": {"contains": {"type": "string", "pattern": NOT_BLANK}}},
                },
                {"required": ["image_base64"], "properties": {"image_base64": {"type": "string"}}},
                {"required": ["image_url"], "properties": {"image_url": {"type": "string"}}},
            ],
            "not": {
                "required": ["image_base64", "image_url"],
                "properties": {"image_base64": {"type": "string"}, "image_url": {"type": "string"}},
            },
        },
    )

    text: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    texts: list[Annotated[str, Field(max_length=MAX_TEXT_CHARS)]] = Field(
        default_factory=list,
        max_length=MAX_TEXTS,
        description="Blank entries are ignored; send at least one with text if nothing else.",
    )
    image_base64: str | None = Field(
        default=None,
        min_length=1,
        pattern=BASE64_IMAGE,
        description="PNG, JPEG or WebP bytes, base64 (a data: URL prefix is accepted).",
    )
    image_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()*+,;=:@\[\]-]+([/?#][!-~]*)?$",
        description="An http(s) URL (printable ASCII: percent-encode the rest) of a PNG, JPEG or WebP image "
        "on a public address; fetched with brand "
        "research's limits (public addresses only, CONTENTFORGE_RESEARCH_TIMEOUT_S, "
        "CONTENTFORGE_RESEARCH_MAX_REDIRECTS) and CONTENTFORGE_API_MAX_IMAGE_BYTES.",
    )

    @model_validator(mode="after")
    def _something_to_check(self) -> SafetyCheckRequest:
        if self.image_base64 and self.image_url:
            raise ValueError("send image_base64 or image_url, not both")
        if not (self.text or any(t.strip() for t in self.texts) or self.image_base64 or self.image_url):
            raise ValueError("send text, texts, image_base64 and/or image_url")
        return self

    @property
    def all_texts(self) -> list[str]:
        return [t for t in ([self.text] if self.text else []) + self.texts if t.strip()]


class SafetyCheckResponse(BaseModel):
    verdict: str
    scores: dict[str, float]
    reasons: list[str]
    backends: list[str]
    needs_review: bool
    review_reasons: list[str]
    accepted_platforms: list[Platform]


class UploadedImage(BaseModel):
    filename: str = Field(
        description="As the client named the file (stored in the record, never used as a path)."
    )
    key: str = Field(
        description="Storage key: content/<persona>/upload-<sha256 of the stored PNG, 32 hex>.png"
    )
    url: str
    sha256: str = Field(description="Of the stored PNG (the upload's pixels with its provenance label).")
    original_sha256: str = Field(description="Of the bytes the client sent.")
    digital_source_type: str = Field(
        description="IPTC: digitalCapture, or trainedAlgorithmicMedia if stated."
    )
    verdict: str
    scores: dict[str, float]
    reasons: list[str]
    needs_review: bool
    review_reasons: list[str]
    accepted_platforms: list[Platform]
    written: bool = Field(description="False when identical bytes were stored already.")


class UploadBatchResponse(BaseModel):
    persona_id: str
    ai_generated: bool
    items: list[UploadedImage]


class PieceOut(BaseModel):
    id: str
    batch_id: str
    parent_piece_id: str | None = Field(
        description="The piece this one is a variation of (POST /content/{id}/variations), usually in "
        "another batch: GET /pieces/{parent_piece_id} shows it. Null: not a variation.",
    )
    persona_id: str
    platform: str | None
    index: int
    template_id: str
    template_tier: str
    status: PieceStatus
    verdict: str | None
    tier: str | None
    moderation_scores: dict[str, float] | None
    moderation_reasons: list[str] | None
    cost_usd: float | None = Field(description="The image generation cost.")
    cost_usd_total: float = Field(description="Every cost charged to the piece: image, text, moderation.")
    generation_seconds: float | None
    seed: int
    prompt: str
    prompt_quality_gate: dict[str, Any] | None = Field(
        default=None, description="The quality gate's verdict on the image prompt; null: not gated."
    )
    decision: str | None = Field(
        default=None,
        description="What an AUTO or ASSISTED batch chose for the piece and why, in one line; null: MANUAL.",
    )
    image_url: str | None
    hooks: list[HookOut]
    error: str | None
    created_at: datetime
    updated_at: datetime


class PieceDetailOut(PieceOut):
    """One piece (``GET /pieces/{id}``): ``PieceOut`` (with the piece it varies) and its own variations."""

    variation_ids: list[str] = Field(
        default_factory=list,
        description="Pieces made as variations of this one, oldest first (POST /content/{id}/variations).",
    )


class ContentPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[PieceOut]


class PersonaStats(BaseModel):
    persona_id: str
    batches: int
    pieces: int
    generated: int
    by_status: dict[str, int]
    by_tier: dict[str, int]
    by_platform: dict[str, int]
    pending_review: int
    cost_usd_total: float
    """Batches' costs plus the persona's strategy steps (topics, blog posts, social posts)."""
    cost_usd_by_kind: dict[str, float]
    """Batch costs by kind (image, text, moderation, publishing)."""
    strategy_cost_usd_by_step: dict[str, float]
    """Model calls of strategy steps that worked for this persona, and of API requests for it
    (``api_hooks``: hooks, variations, calls to action); they belong to no batch."""
    generation_seconds_mean: float | None
    latest_batch_id: str | None


class BatchOut(BaseModel):
    batch_id: str
    persona_id: str
    platform: str
    status: str
    num_pieces: int
    flow_run_id: str | None
    stats: BatchStats


class BatchGalleryOut(BaseModel):
    """A batch and its pieces as the review gallery loads them, read from one snapshot."""

    batch: BatchOut
    pieces: list[PieceOut]


class PieceUrl(BaseModel):
    piece_id: str
    index: int
    status: PieceStatus
    tier: str | None
    url: str | None = Field(description="None while the piece has no stored image.")


class BatchUrls(BaseModel):
    batch_id: str
    storage: Literal["local", "s3"]
    url_kind: Literal["api", "cdn", "presigned"] = Field(
        description="`api`: this API's `/content/...` (send the bearer token); `cdn`: under "
        "CONTENTFORGE_PUBLIC_BASE_URL; `presigned`: S3 GET URLs valid for `expires_in_s` seconds."
    )
    expires_in_s: int | None
    items: list[PieceUrl]


class RunOut(BaseModel):
    id: str
    name: str | None
    deployment_id: str | None
    state_type: str | None
    state_name: str | None
    state_message: str | None
    tags: list[str]
    parameters: dict[str, Any]
    created: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    progress_percent: float | None = Field(description="From the run's progress artifact, if any yet.")
    batch_id: str | None
    pieces_by_status: dict[str, int] | None = Field(description="From the database, once the batch exists.")
    gallery_url: str | None


class ReviewRequest(_Request):
    """Approve (optionally with a tier) or reject (with a reason that is not blank, and no tier)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"properties": {"decision": {"const": "approve"}}},
                {
                    "required": ["reason"],
                    "properties": {
                        "decision": {"const": "reject"},
                        "reason": {"type": "string", "pattern": NOT_BLANK},
                        "tier": {"type": "null"},
                    },
                },
            ]
        },
    )

    decision: Literal["approve", "reject"]
    reason: str = Field(default="", max_length=2000)
    tier: Literal["safe", "suggestive", "restricted"] | None = None
    rating: int | None = Field(
        default=None, ge=1, le=5, description="1 (bad) to 5 (great): teaches the LoRA and parameter scores."
    )

    @model_validator(mode="after")
    def _reject_needs_reason(self) -> ReviewRequest:
        if self.decision == "reject" and not self.reason.strip():
            raise ValueError("a rejection needs a reason")
        if self.decision == "reject" and self.tier is not None:
            raise ValueError("tier applies to approvals only")
        return self


class ReviewOut(BaseModel):
    piece_id: str
    decision: str
    reviewer: str
    reason: str
    status: PieceStatus
    tier: str | None
    created_at: datetime
    learned: list[str] = Field(
        default_factory=list, description="The LoRA and parameter scores the decision updated (lora:name…)."
    )


class RatingRequest(_Request):
    """A 1-5 rating of a generated piece; it counts once per piece and rater."""

    rating: int = Field(ge=1, le=5, description="1 (bad) to 5 (great).")


class RatingOut(BaseModel):
    piece_id: str
    rating: int
    rater: str
    learned: list[str] = Field(description="The LoRA and parameter scores the rating updated (lora:name…).")
