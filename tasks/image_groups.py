"""How a GPU stage cuts its pieces into generation groups: one task (or call) and one slot each.

Shared by the ``generate-images`` flow and the warm GPU workers (``tasks/gpu_workers.py``), which
plan the groups where the model is loaded: the group size is the backend's micro-batch, known only
to the process that runs it (a batch flow on a CPU machine would see no GPU).
"""

from __future__ import annotations

from contentforge.batch import image_request_for
from contentforge.images.batching import group_requests, image_group_size
from contentforge.images.protocol import ImageRequest
from tasks import resources
from tasks.planning import load_piece


def plan_image_groups(piece_ids: list[str], size: int) -> list[list[str]]:
    """Piece ids cut into image groups of pieces that can share one pipeline call."""
    repo, config = resources.repository(), resources.settings()
    pieces = [load_piece(piece_id) for piece_id in piece_ids]
    personas = {p.persona_id: repo.get_persona(p.persona_id) for p in pieces}
    ids: list[str] = []
    requests: list[ImageRequest] = []
    alone: list[list[str]] = []
    for piece in pieces:
        persona = personas[piece.persona_id]
        if persona is None:  # the task reports it; keep the piece alone
            alone.append([piece.id])
        else:
            ids.append(piece.id)
            requests.append(image_request_for(piece, persona, config))
    return [[ids[i] for i in group] for group in group_requests(requests, size)] + alone


def plan_generation_groups(piece_ids: list[str]) -> tuple[list[list[str]], bool]:
    """The groups of pieces generated together (one per task and slot), and whether they are image
    groups (one pipeline call each) rather than lone pieces."""
    size = image_group_size(resources.image_backend())
    if size > 1:
        return plan_image_groups(piece_ids, size), True
    return [[piece_id] for piece_id in piece_ids], False
