"""Tasks that check a request's own template, prompt and parameters and write them into its pieces."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from contentforge.batch import BatchRequest
from contentforge.piece_requests import PieceRequest, apply_piece_request, check_piece_request
from tasks import resources


@task(cache_policy=NO_CACHE, persist_result=False)
def check_request(template_id: str | None, image_params: dict[str, Any] | None) -> PieceRequest:
    """The run's template, prompt and parameters checked before any work (one line if refused)."""
    return check_piece_request(resources.settings(), template_id, **(image_params or {}))


@task(cache_policy=NO_CACHE, persist_result=False)
def apply_request(request: BatchRequest, piece_ids: list[str], piece_request: PieceRequest) -> int:
    """Write the request into the batch's still-planned pieces; returns how many were written."""
    settings = resources.settings()
    return apply_piece_request(resources.repository(), settings, request.persona, piece_ids, piece_request)
