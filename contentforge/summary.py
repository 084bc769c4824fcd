"""Human-readable batch summaries (markdown and a table), shared by the flow's artifacts and the CLI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from contentforge.db import BatchStats, PieceRow
from contentforge.images.timings import DECODE_S, DENOISE_S, LOAD_S, mean_timings

if TYPE_CHECKING:
    from contentforge.config import Settings


def gallery_url(settings: Settings, batch_id: str) -> str:
    """The review gallery's absolute URL for a batch (served by ``contentforge_api``), for links in
    artifacts and messages: ``CONTENTFORGE_API_PUBLIC_URL``, else the API's host and port."""
    base = settings.api_public_url or f"http://{settings.api_host}:{settings.api_port}"
    return f"{base.rstrip('/')}/gallery/batches/{batch_id}"


def _fmt_cost(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.4f}"


_TIMING_LABELS = ((LOAD_S, "load"), (DENOISE_S, "denoise"), (DECODE_S, "decode"))


def batch_summary_markdown(
    stats: BatchStats,
    pieces: Sequence[PieceRow],
    gallery: str | None = None,
    stage_seconds: Mapping[str, float] | None = None,
) -> str:
    """Counts by status and tier, total and per-piece cost, time per stage, and the review gallery.

    ``stage_seconds``: what the batch flow measured (``plan``, then when images, hooks and
    moderation were done).
    """
    lines = [
        f"# Batch `{stats.batch_id}`",
        "",
        *(
            [f"[Review gallery]({gallery}) (needs `contentforge api serve` or `contentforge up`)", ""]
            if gallery
            else []
        ),
        f"**{stats.pieces} pieces**, {stats.generated} images generated, {stats.hooks} hooks.",
        "",
        "| status | count |",
        "|---|---|",
        *(f"| {name} | {count} |" for name, count in stats.by_status.items()),
        "",
        "| moderation tier | count |",
        "|---|---|",
        *(f"| {name} | {count} |" for name, count in sorted(stats.by_verdict.items())),
        "",
        f"Cost: total {_fmt_cost(stats.cost_usd_total)}, "
        f"per generated piece {_fmt_cost(stats.cost_usd_mean)}.",
    ]
    mean = stats.generation_seconds_mean
    if mean is not None:
        lines.append(f"Mean generation time: {mean:.3f} s per image.")
    timings = mean_timings(p.generation_record for p in pieces)
    if timings:
        parts = [f"{label} {timings[key]:.3f} s" for key, label in _TIMING_LABELS if key in timings]
        lines.append(f"Mean time per generation: {', '.join(parts)}.")
    stages = stage_seconds or {}
    if stages:
        plan = stages.get("plan")
        overlapping = {k: v for k, v in stages.items() if k != "plan"}
        lines += ["", f"Planning: {plan:.2f} s." if plan is not None else ""]
        if overlapping:
            lines += [
                "Images, hooks and moderation overlap (a piece is moderated once its image and hooks",
                "exist); seconds from the end of planning until each was done:",
                "",
                "| stage | done after (s) |",
                "|---|---|",
                *(f"| {k} | {v:.2f} |" for k, v in overlapping.items()),
            ]
    explained = [p for p in pieces if decision_of(p)]
    if explained:  # an AUTO or ASSISTED batch: what was chosen for each piece, and why
        lines += [
            "",
            "## LoRAs and parameters chosen",
            *(f"- `{p.id}`: {decision_of(p)}" for p in explained[:50]),
        ]
    failed = [p for p in pieces if p.error]
    if failed:
        lines += ["", "## Failed pieces", *(f"- `{p.id}`: {p.error}" for p in failed[:20])]
    rejected = [p for p in pieces if p.verdict is not None and p.verdict.value == "rejected"]
    if rejected:
        lines += [
            "",
            "## Rejected by moderation",
            *(f"- `{p.id}`: {'; '.join(p.moderation_reasons or [])}" for p in rejected[:20]),
        ]
    return "\n".join(lines)


def batch_summary_table(pieces: Sequence[PieceRow]) -> list[dict[str, Any]]:
    """One row per piece: what a reviewer scans first."""
    return [
        {
            "piece": p.id,
            "template": p.template_id,
            "status": p.status.value,
            "verdict": p.verdict.value if p.verdict else "",
            "seed": p.seed,
            "seconds": round(p.generation_seconds or 0.0, 3),
            "cost_usd": round(p.cost_usd or 0.0, 4),
            "hooks": len(p.hooks),
            "url": p.url or "",
            **({"decision": decision_of(p)} if decision_of(p) else {}),
        }
        for p in pieces
    ]


def decision_of(piece: PieceRow) -> str:
    """What an AUTO or ASSISTED batch chose for the piece and why (``models.explain``); "" for MANUAL."""
    extra = (piece.generation_record or {}).get("extra") or {}
    return str(extra.get("decision") or "")
