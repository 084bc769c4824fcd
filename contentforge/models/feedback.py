"""Feedback from people to the recommender and the optimizer: a review decision or a 1-5 rating of a piece.

A piece's generation record says which LoRAs (by file) and which steps and guidance made it; each of
them gets the approval, rejection or rating (``db.registry.ModelRegistry.record_feedback``), so the next
recommendation for a similar prompt leans towards what people liked. LoRAs that are not in the
registry (a persona's own file, a hub id) are skipped: there is nothing to recommend them by.

From the review API, CLI and gallery: a review decision counts once (a piece is decided once), and a
rating once per piece and rater (``rate_piece``).
"""

from __future__ import annotations

from contentforge.db import PieceRow
from contentforge.db.piece_ratings import PieceRatings
from contentforge.db.registry import ModelRegistry
from contentforge.domain import GenerationRecord
from contentforge.errors import InvalidInput


class AlreadyRated(InvalidInput):
    """The rater rated this piece before; a rating counts once per piece and rater."""


def param_keys(record: GenerationRecord) -> list[str]:
    return [f"steps:{record.steps}", f"guidance:{record.guidance_scale:g}"]


def record_piece_feedback(
    registry: ModelRegistry,
    record: GenerationRecord,
    *,
    approved: bool | None = None,
    rating: int | None = None,
) -> list[str]:
    """Credit the piece's registry LoRAs and parameter values; returns what was updated (``lora:name``…)."""
    if approved is None and rating is None:
        raise InvalidInput("give a decision (approve or reject) or a rating from 1 to 5")
    if rating is not None and not 1 <= rating <= 5:
        raise InvalidInput(f"rating {rating}: use 1 to 5")
    by_path = {m.path: m.name for m in registry.list_models(kind="lora")}
    updated = []
    for lora in record.loras:
        name = by_path.get(lora.source)
        if name is not None:
            registry.record_feedback("lora", name, approved=approved, rating=rating)
            updated.append(f"lora:{name}")
    for key in param_keys(record):
        registry.record_feedback("param", key, approved=approved, rating=rating)
        updated.append(f"param:{key}")
    return updated


def rate_piece(
    registry: ModelRegistry,
    ratings: PieceRatings,
    piece: PieceRow,
    rater: str,
    rating: int,
    display_name: str = "",
) -> list[str]:
    """A person's 1-5 rating of a generated piece, counted once per piece and rater (``PieceRatings``).

    ``rater`` is who is accountable (the API token's identity, the CLI's reviewer); ``display_name`` is
    only shown with the rating and never makes a second rating count.

    Returns what was updated; a repeated rating by the same rater changes nothing and is refused in one
    line, so a retried request or a second click never counts twice.
    """
    if not 1 <= rating <= 5:
        raise InvalidInput(f"rating {rating}: use 1 to 5")
    record = piece.record
    if record is None:
        raise InvalidInput(f"piece {piece.id} has no image yet: rate it once it is generated")
    earlier = ratings.claim(piece.id, rater, rating, display_name)
    if earlier is not None:
        raise AlreadyRated(f"piece {piece.id} was already rated {earlier} by {rater}; a rating counts once")
    return record_piece_feedback(registry, record, rating=rating)


def review_feedback(
    registry: ModelRegistry,
    ratings: PieceRatings,
    piece: PieceRow,
    *,
    approved: bool,
    rater: str,
    rating: int | None = None,
    display_name: str = "",
) -> list[str]:
    """A review decision (and its optional rating) credited to the piece's LoRAs and parameters.

    A piece is decided once (the review queue refuses a second decision), so the decision counts once;
    its rating is claimed for ``rater`` like any rating, so it never counts twice either.
    """
    if piece.record is None:
        return []
    if rating is not None and ratings.claim(piece.id, rater, rating, display_name) is not None:
        rating = None  # this rater rated the piece before: the decision counts, the rating not again
    return record_piece_feedback(registry, piece.record, approved=approved, rating=rating)
