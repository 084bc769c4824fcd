"""What the repository returns: typed rows and reports, detached from any session.

Everything here can cross threads and outlive the transaction that read it. ``BatchStats`` and
``BatchSummary`` are pydantic models, so a front end or a flow turns them into JSON with
``model_dump(mode="json")`` instead of reading string keys of a dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from contentforge.domain.binding import judged_hash, judged_texts
from contentforge.domain.models import GenerationRecord, Hook, PieceStatus, Verdict


@dataclass(frozen=True)
class PlannedPiece:
    """A piece as the planner decided it, before any image exists."""

    piece_id: str
    index: int
    template_id: str
    template_tier: str
    prompt: str
    negative_prompt: str
    seed: int
    prompt_quality_gate: dict[str, Any] | None = None
    """The quality gate's verdict on ``prompt`` (``contentforge.quality.batch_gate``)."""
    parent_piece_id: str | None = None
    """The piece this one is a variation of (``contentforge.piece_variations``)."""
    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    loras: tuple[dict[str, Any], ...] | None = None
    scheduler: str | None = None
    """A variation's exact request beside its prompt and seed (None: the settings decide at generation,
    as for every batch piece); written into the row's generation columns while it is planned."""


@dataclass(frozen=True)
class PieceRow:
    """A ``pieces`` row with its hooks, detached from any session so it can cross threads."""

    id: str
    batch_id: str
    persona_id: str
    index: int
    template_id: str
    template_tier: str
    status: PieceStatus
    prompt: str
    negative_prompt: str
    seed: int
    model: str | None
    backend: str | None
    loras: list[dict[str, Any]] | None
    steps: int | None
    guidance_scale: float | None
    width: int | None
    height: int | None
    scheduler: str | None
    generation_record: dict[str, Any] | None
    generation_fingerprint: str | None
    storage_key: str | None
    url: str | None
    content_sha256: str | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    generation_seconds: float | None
    cost_usd: float | None
    verdict: Verdict | None
    tier: str | None
    moderation_scores: dict[str, float] | None
    moderation_reasons: list[str] | None
    moderated_hash: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    hooks: tuple[Hook, ...]
    prompt_source: str | None = None
    """``llm`` or ``rules`` when the planner recorded where the image prompt came from, else None."""
    prompt_fallback: str | None = None
    """Why a model-written prompt fell back to the rules (short), else None."""
    prompt_quality_gate: dict[str, Any] | None = None
    """The quality gate's verdict on the image prompt (None: planned before revision 0013)."""
    parent_piece_id: str | None = None
    """The piece this one is a variation of (revision 0016), else None."""

    @property
    def record(self) -> GenerationRecord | None:
        """The stored generation record, parsed; enough to regenerate the image exactly."""
        if self.generation_record is None:
            return None
        return GenerationRecord.model_validate(self.generation_record)

    @property
    def verdict_is_bound(self) -> bool:
        """Whether the stored verdict judged exactly this row's image, prompt and hooks."""
        content = judged_hash(self.content_sha256, judged_texts(self.prompt, self.hooks))
        return self.moderated_hash is not None and self.moderated_hash == content


class BatchStats(BaseModel):
    """Counts and costs of one batch (``Repository.batch_stats``).

    ``cost_usd_total`` sums every cost entry (image, text, moderation, publishing);
    ``cost_usd_mean`` divides it by the pieces that got an image, i.e. what one usable-or-not image
    cost end to end (None before any image exists).
    """

    model_config = ConfigDict(frozen=True)

    batch_id: str
    status: str
    num_pieces: int
    pieces: int
    by_status: dict[str, int]
    """Every piece status, zero where no piece has it."""
    by_verdict: dict[str, int]
    by_tier: dict[str, int]
    by_template_tier: dict[str, int]
    generated: int
    """Pieces with an image."""
    cost_usd_total: float
    cost_usd_by_kind: dict[str, float]
    """Every cost kind, zero where nothing was charged."""
    cost_usd_mean: float | None
    generation_seconds_mean: float | None
    hooks: int


class BatchSummary(BaseModel):
    """One line of ``Repository.latest_batches``: a batch with its persona's name and piece counts."""

    model_config = ConfigDict(frozen=True)

    id: str
    persona_id: str
    persona_name: str
    platform: str
    num_pieces: int
    tier_mix: dict[str, float]
    seed: int
    status: str
    """``crashed`` for a running batch whose runner's lease ran out (``effective_status``)."""
    flow_run_id: str | None
    started_at: datetime
    finished_at: datetime | None
    summary: dict[str, Any] | None
    """What the batch flow stored when it finished (redacted), or None while it runs."""
    by_status: dict[str, int]


@dataclass
class BatchCost:
    """A batch's line in a ``CostReport``."""

    batch_id: str
    persona_id: str
    entries: int = 0
    usd: float = 0.0
    usd_by_kind: dict[str, float] = field(default_factory=dict)


@dataclass
class StepCost:
    """A strategy step's line in a ``CostReport``: its model calls summed over every run."""

    step: str
    entries: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0


@dataclass(frozen=True)
class CostReport:
    """The ledger summed per batch and per strategy step (``Repository.cost_report``)."""

    batches: list[BatchCost]
    steps: list[StepCost]

    @property
    def total_usd(self) -> float:
        return sum(b.usd for b in self.batches) + sum(s.usd for s in self.steps)
