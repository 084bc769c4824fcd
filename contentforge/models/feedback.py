"""Feedback from people to the recommender and the optimizer: a review decision or a 1-5 rating of a piece.

A piece's generation record says which LoRAs (by file) and which steps and guidance made it; each of
them gets the approval, rejection or rating (``db.registry.ModelRegistry.record_feedback``), so the next
recommendation for a similar prompt leans towards what people liked. LoRAs that are not in the
registry (a persona's own file, a hub id) are skipped: there is nothing to recommend them by.
"""

from __future__ import annotations

from contentforge.db.registry import ModelRegistry
from contentforge.domain import GenerationRecord
from contentforge.errors import InvalidInput


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
