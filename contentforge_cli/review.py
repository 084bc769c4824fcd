"""``contentforge review``: pieces waiting for a human decision, approved or rejected with a reason."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from contentforge_cli import context
from contentforge_cli.context import console

app = typer.Typer(help="Pieces waiting for a human decision (status needs_review).", no_args_is_help=True)


@app.command("list")
def review_list(
    batch: Annotated[str | None, typer.Option(help="Batch id.")] = None,
    persona: Annotated[str | None, typer.Option(help="Persona id.")] = None,
    limit: Annotated[int, typer.Option()] = 100,
) -> None:
    """List pieces waiting for review, with their top scores and why they wait."""
    items = context.review_queue().pending(batch_id=batch, persona_id=persona, limit=limit)
    table = Table("piece", "batch", "persona", "verdict", "top scores", "why", "url")
    for item in items:
        top = sorted(item.scores.items(), key=lambda kv: -kv[1])[:2]
        why = "; ".join(
            r.removeprefix("needs review: ") for r in item.reasons if r.startswith("needs review")
        )
        table.add_row(
            item.piece_id,
            item.batch_id[:12],
            item.persona_id,
            item.verdict or "",
            ", ".join(f"{k} {v:.2f}" for k, v in top),
            why,
            item.url or "",
        )
    console.print(table)
    console.print(f"{len(items)} piece(s) waiting for review")


@app.command("approve")
def review_approve(
    piece: Annotated[str, typer.Argument(help="Piece id.")],
    reviewer: Annotated[str, typer.Option(help="Who decides.")],
    reason: Annotated[str, typer.Option(help="Why (optional for approvals).")] = "",
    tier: Annotated[
        str | None, typer.Option(help="safe, suggestive or restricted; default the policy's.")
    ] = None,
) -> None:
    """Approve a piece: it becomes ready (publishable on the platforms its tier allows)."""
    from contentforge.validation import check_piece_id

    check_piece_id(piece)
    context.review_queue().approve(piece, reviewer=reviewer, reason=reason, tier=tier)
    console.print(f"{piece}: approved by {reviewer}")


@app.command("reject")
def review_reject(
    piece: Annotated[str, typer.Argument(help="Piece id.")],
    reviewer: Annotated[str, typer.Option(help="Who decides.")],
    reason: Annotated[str, typer.Option(help="Why; required.")],
) -> None:
    """Reject a piece: it is never published; the reason is recorded."""
    from contentforge.validation import check_piece_id

    check_piece_id(piece)
    context.review_queue().reject(piece, reviewer=reviewer, reason=reason)
    console.print(f"{piece}: rejected by {reviewer}")
