"""Pydantic models for personas, templates, generation records, hooks and verdicts.

They validate at the boundary (files, CLI, flow parameters) so that bad input fails before any
generation starts, with a message that names the field.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
"""Persona and piece ids end up in storage keys and file names, so they are restricted to a safe slug."""


class Platform(StrEnum):
    instagram = "instagram"
    tiktok = "tiktok"
    x = "x"
    threads = "threads"
    linkedin = "linkedin"


PLATFORMS: tuple[str, ...] = tuple(p.value for p in Platform)


class TemplateTier(StrEnum):
    """How revealing a template is by design; nothing explicit exists in the library."""

    safe = "safe"
    suggestive = "suggestive"


class Verdict(StrEnum):
    """Moderation outcome; decides which platforms may receive a piece."""

    safe = "safe"
    suggestive = "suggestive"
    restricted = "restricted"
    rejected = "rejected"


class PieceStatus(StrEnum):
    planned = "planned"
    generated = "generated"
    ready = "ready"
    needs_review = "needs_review"
    rejected = "rejected"
    failed = "failed"
    cancelled = "cancelled"
    """Not made: its batch's run was cancelled first. Resuming the batch id makes it."""
    crashed = "crashed"
    """Not made: its batch's run died first (crash, or its lease ran out). Resuming makes it."""


class HookStyle(StrEnum):
    question = "question"
    challenge = "challenge"
    story = "story"
    tip = "tip"
    teaser = "teaser"
    relatable = "relatable"


class LoraSpec(BaseModel):
    """A persona's LoRA: a local .safetensors file or a hub id, with its trigger word and scale."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=1, max_length=1024, description="Path to a .safetensors file, or a hub id."
    )
    weight_name: str | None = Field(
        default=None, min_length=1, max_length=255, description="File inside a hub repo or folder."
    )
    trigger_word: str | None = Field(default=None, min_length=1, max_length=60)
    scale: float = Field(default=0.8, ge=-4.0, le=4.0)


class LoraRef(BaseModel):
    """A LoRA as used in one generation; part of the generation record."""

    source: str
    weight_name: str | None = None
    scale: float
    sha256: str | None = None


PERSONA_TRAITS_MAX = 20
PERSONA_TRAIT_CHARS = 80
PERSONA_INTERESTS_MAX = 30
PERSONA_INTEREST_CHARS = 100
Trait = Annotated[str, Field(min_length=1, max_length=PERSONA_TRAIT_CHARS)]
Interest = Annotated[str, Field(min_length=1, max_length=PERSONA_INTEREST_CHARS)]


class Persona(BaseModel):
    """An AI persona whose content a batch produces.

    Every text and list is bounded (a real persona uses a fraction of each limit): the fields end up
    in prompts, captions and storage metadata, and one oversized field must not stall a batch.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=120)
    niche: str = Field(min_length=1, max_length=60)
    appearance: str = Field(min_length=1, max_length=600)
    personality_traits: list[Trait] = Field(min_length=1, max_length=PERSONA_TRAITS_MAX)
    interests: list[Interest] = Field(min_length=1, max_length=PERSONA_INTERESTS_MAX)
    tone: str = Field(min_length=1, max_length=200)
    timezone: str = Field(default="UTC", min_length=1, max_length=64)
    platforms: list[Platform] = Field(min_length=1, max_length=len(Platform))
    lora: LoraSpec | None = None

    @field_validator("name", "niche", "appearance", "tone")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("personality_traits", "interests")
    @classmethod
    def _no_blank_items(cls, value: list[str]) -> list[str]:
        if blank := [i for i, item in enumerate(value) if not item.strip()]:
            raise ValueError(f"item {blank[0]} is blank")
        return value

    @field_validator("platforms")
    @classmethod
    def _distinct_platforms(cls, value: list[Platform]) -> list[Platform]:
        return list(dict.fromkeys(value))

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r} (use an IANA name like 'Europe/Berlin')") from exc
        return value

    @field_validator("niche")
    @classmethod
    def _normalise_niche(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def trigger_word(self) -> str | None:
        """The word that activates the persona's LoRA: its own, else ``TOK_<first 8 chars of id>``."""
        if self.lora is None:
            return None
        return self.lora.trigger_word or f"TOK_{self.id[:8]}"


TEMPLATE_ID_PATTERN = r"^[A-Z]{3,5}-\d{3}$"


class Template(BaseModel):
    """One entry of the template library (data, not code)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=TEMPLATE_ID_PATTERN)
    category: str
    niches: tuple[str, ...] = Field(min_length=1)
    prompt: str = Field(min_length=10)
    pose: str
    lighting: str
    camera_angle: str
    tags: tuple[str, ...] = ()
    tier: TemplateTier


class TierMix(BaseModel):
    """Share of each template tier in a batch; the shares must sum to 1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    safe: float = Field(default=0.7, ge=0.0, le=1.0)
    suggestive: float = Field(default=0.3, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _sums_to_one(self) -> TierMix:
        total = self.safe + self.suggestive
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"tier mix must sum to 1, got {total:g} (safe={self.safe}, suggestive={self.suggestive})"
            )
        return self

    @classmethod
    def parse(cls, text: str) -> TierMix:
        """Parse ``"safe=0.7,suggestive=0.3"`` (the CLI form)."""
        shares: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"tier mix entry {part!r} is not name=share")
            try:
                shares[name.strip()] = float(value)
            except ValueError as exc:
                raise ValueError(f"tier mix share {value!r} is not a number") from exc
        return cls(**shares)

    def counts(self, total: int) -> dict[TemplateTier, int]:
        """Split ``total`` pieces by share, rounding so the counts add up exactly."""
        suggestive = round(total * self.suggestive)
        return {TemplateTier.safe: total - suggestive, TemplateTier.suggestive: suggestive}


MEASURED_EXTRA_KEYS = frozenset(
    {"load_s", "denoise_s", "decode_s", "cost_usd", "prediction_id", "predict_time_s", "generation_id"}
)
"""``GenerationRecord.extra`` entries that measure a run (``contentforge.images.timings``, a remote
backend's prediction id and server time, and the id its charge is keyed by), not the image: left out
of the fingerprint."""


class GenerationRecord(BaseModel):
    """Everything needed to regenerate an image exactly; stored on the piece and in the file."""

    model_config = ConfigDict(frozen=True)

    backend: str
    model: str
    prompt: str
    negative_prompt: str = ""
    seed: int = Field(ge=0, lt=2**63)
    steps: int
    guidance_scale: float
    width: int
    height: int
    scheduler: str | None = None
    loras: tuple[LoraRef, ...] = ()
    extra: dict[str, str] = Field(default_factory=dict)

    def fingerprint(self) -> str:
        """A stable hash of the record: the same record always means the same image.

        Measurements of the run (timings, cost) are left out: they differ between runs of one image.
        """
        data = self.model_dump(mode="json")
        data["extra"] = {k: v for k, v in data["extra"].items() if k not in MEASURED_EXTRA_KEYS}
        payload = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()


class Hook(BaseModel):
    """One caption variation for one platform."""

    style: HookStyle
    text: str
    call_to_action: str
    hashtags: list[str] = Field(default_factory=list)
    platform: Platform
    quality_gate: dict[str, Any] | None = None
    """The quality gate's verdict (``GateResult.as_dict``), stored with the hook; ``None``: not gated."""

    @property
    def held_by_quality_gate(self) -> bool:
        """A hook the gate marked ``needs_review``: shown to reviewers, never chosen for publishing."""
        return (self.quality_gate or {}).get("status") == "needs_review"

    @property
    def caption(self) -> str:
        """The full post text as it would be published."""
        tags = " ".join([f"#{t}" for t in self.hashtags])  # lists, not generators: read ~250 times a page
        return "\n\n".join([part for part in (self.text, self.call_to_action, tags) if part])


class ModerationVerdict(BaseModel):
    """The outcome of moderating one piece: per-category scores, the tier and why."""

    verdict: Verdict
    scores: dict[str, float]
    reasons: list[str] = Field(default_factory=list)
    backends: list[str] = Field(default_factory=list)


def slugify(text: str) -> str:
    """Lower-case slug safe for ids and storage keys."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:64] or uuid.uuid4().hex
