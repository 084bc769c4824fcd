"""``contentforge review``: pieces waiting for a human decision, approved or rejected with a reason.

A decision, and a 1-5 rating (``--rating`` or ``review rate``), also teach the recommender: the piece's
LoRAs and parameter values get the approval, rejection or rating (``contentforge models learned``).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from contentforge_cli import context
from contentforge_cli.context import console

RATING_OPTION = typer.Option(min=1, max=5, help="Also rate the piece 1 (bad) to 5 (great).")
app = typer.Typer(help="Pieces waiting for a human decision (status needs_review).", no_args_is_help=True)


def _check_reviewer(reviewer: str, *, rating_only: bool = False) -> None:
    """Refuse a reviewer name its column cannot hold, in one line before any work.

    A decision records the name in ``review_decisions.reviewer``; a rating keys it as the rater in
    ``piece_ratings.rater``. Over the column's length PostgreSQL refuses the row (SQLite would keep it),
    after the piece was read and the decision half made: the limit is read from the columns themselves.
    """
    from sqlalchemy import String

    from contentforge.db.models import ReviewDecisionORM
    from contentforge.db.models_ratings import PieceRatingORM
    from contentforge.errors import InvalidInput
    from contentforge.validation import check_text

    column = PieceRatingORM.__table__.c.rater if rating_only else ReviewDecisionORM.__table__.c.reviewer
    if not reviewer.strip():
        raise InvalidInput("--reviewer must name who decides; it is blank")
    assert isinstance(column.type, String) and column.type.length is not None
    check_text(reviewer, "--reviewer", column.type.length)


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
    rating: Annotated[int | None, RATING_OPTION] = None,
) -> None:
    """Approve a piece: it becomes ready (publishable on the platforms its tier allows)."""
    from contentforge.validation import check_piece_id

    check_piece_id(piece)
    _check_reviewer(reviewer)
    context.review_queue().approve(piece, reviewer=reviewer, reason=reason, tier=tier)
    console.print(
        f"{piece}: approved by {reviewer}{_learned(piece, True, reviewer, rating)}", highlight=False
    )


@app.command("reject")
def review_reject(
    piece: Annotated[str, typer.Argument(help="Piece id.")],
    reviewer: Annotated[str, typer.Option(help="Who decides.")],
    reason: Annotated[str, typer.Option(help="Why; required.")],
    rating: Annotated[int | None, RATING_OPTION] = None,
) -> None:
    """Reject a piece: it is never published; the reason is recorded."""
    from contentforge.validation import check_piece_id

    check_piece_id(piece)
    _check_reviewer(reviewer)
    context.review_queue().reject(piece, reviewer=reviewer, reason=reason)
    console.print(
        f"{piece}: rejected by {reviewer}{_learned(piece, False, reviewer, rating)}", highlight=False
    )


@app.command("rate")
def review_rate(
    piece: Annotated[str, typer.Argument(help="Piece id.")],
    rating: Annotated[int, typer.Option(min=1, max=5, help="1 (bad) to 5 (great).")],
    reviewer: Annotated[str, typer.Option(help="Who rates; a rating counts once per piece and reviewer.")],
) -> None:
    """Rate a generated piece 1-5: its LoRAs' and parameters' scores move for the next recommendation."""
    from contentforge.db import RecordNotFound
    from contentforge.db.piece_ratings import PieceRatings
    from contentforge.db.registry import ModelRegistry
    from contentforge.models.feedback import rate_piece
    from contentforge.validation import check_piece_id

    check_piece_id(piece)
    _check_reviewer(reviewer, rating_only=True)
    repo = context.repository()
    row = repo.get_piece(piece)
    if row is None:
        raise RecordNotFound(f"no piece with id {piece!r}")
    learned = rate_piece(ModelRegistry(repo.sessions), PieceRatings(repo.sessions), row, reviewer, rating)
    console.print(f"{piece}: rated {rating} by {reviewer}; learned for {', '.join(learned)}", highlight=False)


def _learned(piece: str, approved: bool, reviewer: str, rating: int | None) -> str:
    """Credit the decision (and rating) to the piece's LoRAs and parameters; returns what was learned."""
    from contentforge.db.piece_ratings import PieceRatings
    from contentforge.db.registry import ModelRegistry
    from contentforge.models.feedback import review_feedback

    repo = context.repository()
    row = repo.get_piece(piece)
    if row is None:
        return ""
    learned = review_feedback(
        ModelRegistry(repo.sessions),
        PieceRatings(repo.sessions),
        row,
        approved=approved,
        rater=reviewer,
        rating=rating,
    )
    return f"; learned for {', '.join(learned)}" if learned else ""
