"""Review a batch's borderline pieces in the Prefect UI: pause for a reviewer, apply their decisions.

The flow lists the batch's pieces in ``needs_review`` (an artifact shows their scores and reasons),
then pauses with ``pause_flow_run(wait_for_input=ReviewInput)``; the Prefect UI shows a form, and
``resume_flow_run(flow_run_id, run_input={...})`` does the same from code. Each decision approves
(status ``ready``) or rejects (status ``rejected``) one piece, recorded with reviewer and reason.
Pieces without a decision, and all pieces when the pause times out, stay in ``needs_review``.

    python flows/review_pieces.py BATCH_ID
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.input import RunInput
from pydantic import BaseModel, Field

from contentforge.errors import InvalidInput
from contentforge.moderation.review import ReviewItem
from contentforge.quality.batch_gate import gate_summary
from flows.approval import wait_for_decision
from tasks import resources
from tasks.run_hooks import note_step_end


class PieceDecision(BaseModel):
    """One reviewer decision; ``reviewer`` defaults to the form's reviewer."""

    piece_id: str
    decision: Literal["approve", "reject"]
    reason: str = ""
    reviewer: str | None = None
    tier: Literal["safe", "suggestive", "restricted"] | None = Field(
        default=None, description="Approve with this tier instead of the policy's."
    )


class ReviewInput(RunInput):
    """What the paused flow waits for."""

    reviewer: str = Field(description="Who decides (recorded with every decision).")
    decisions: list[PieceDecision] = Field(default_factory=list)


def review_markdown(batch_id: str, items: list[ReviewItem], gates: Mapping[str, str] | None = None) -> str:
    """The reviewer's table; ``gates``: each piece's quality-gate line (``gate_summary``)."""
    lines = [
        f"# Review batch `{batch_id}`: {len(items)} piece(s)",
        "",
        "| piece | verdict | top scores | why | quality gate | image |",
        "|---|---|---|---|---|---|",
    ]
    for item in items:
        top = sorted(item.scores.items(), key=lambda kv: -kv[1])[:3]
        scores = ", ".join(f"{k} {v:.2f}" for k, v in top)
        why = "; ".join(r for r in item.reasons if r.startswith("needs review")) or "-"
        gate = (gates or {}).get(item.piece_id, "-")
        lines.append(f"| `{item.piece_id}` | {item.verdict} | {scores} | {why} | {gate} | {item.url or ''} |")
    lines += [
        "",
        "Resume with decisions: approve (ready) or reject (with a reason). A hook the quality gate "
        "holds (needs_review) is never published, whatever the decision.",
    ]
    return "\n".join(lines)


@flow(name="review-pieces", on_cancellation=[note_step_end], on_crashed=[note_step_end])
def review_pieces(batch_id: str, timeout_s: int = 3600, poll_interval_s: int = 10) -> dict[str, Any]:
    """Pause for a reviewer's decisions on ``batch_id``'s pieces in ``needs_review`` and apply them."""
    logger = get_run_logger()
    queue = resources.services().review
    pending = queue.pending(batch_id=batch_id)
    summary: dict[str, Any] = {"approved": [], "rejected": [], "errors": [], "timed_out": False}
    if not pending:
        logger.info("batch %s: nothing to review", batch_id)
        return summary | {"pending": []}
    gates = {item.piece_id: _gate_line(item.piece_id) for item in pending}
    create_markdown_artifact(
        review_markdown(batch_id, pending, gates), key=f"review-{batch_id}", description="Pieces to review"
    )
    logger.info("batch %s: waiting for decisions on %d piece(s)", batch_id, len(pending))
    answer = wait_for_decision(
        ReviewInput, key=f"review-{batch_id}", timeout_s=timeout_s, poll_interval_s=poll_interval_s
    )
    if answer is None:
        logger.warning("batch %s: no review within %ss; pieces stay in needs_review", batch_id, timeout_s)
        return summary | {"timed_out": True, "pending": [p.piece_id for p in pending]}

    waiting = {item.piece_id for item in pending}
    for decision in answer.decisions:
        reviewer = decision.reviewer or answer.reviewer
        try:
            if decision.piece_id not in waiting:
                raise InvalidInput(f"piece {decision.piece_id!r} is not waiting for review in this batch")
            if decision.decision == "approve":
                queue.approve(
                    decision.piece_id, reviewer=reviewer, reason=decision.reason, tier=decision.tier
                )
                summary["approved"].append(decision.piece_id)
            else:
                queue.reject(decision.piece_id, reviewer=reviewer, reason=decision.reason)
                summary["rejected"].append(decision.piece_id)
            waiting.discard(decision.piece_id)
            logger.info("piece %s: %s by %s", decision.piece_id, decision.decision, reviewer)
        except InvalidInput as exc:
            summary["errors"].append(f"{decision.piece_id}: {exc}")
            logger.warning("piece %s: decision not applied: %s", decision.piece_id, exc)
    return summary | {"pending": sorted(waiting)}


def _gate_line(piece_id: str) -> str:
    piece = resources.repository().get_piece(piece_id)
    return gate_summary(piece.hooks, piece.prompt_quality_gate) if piece is not None else "-"


if __name__ == "__main__":
    print(review_pieces(sys.argv[1]))
