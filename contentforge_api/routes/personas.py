"""Personas: list, create, read, their content (filtered, paginated) and their statistics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from starlette.concurrency import run_in_threadpool

from contentforge.domain.models import Persona, PieceStatus, Platform, Verdict
from contentforge.errors import InvalidPersona
from contentforge.images.loras import check_client_lora
from contentforge.validation import PERSONA_ID_PATTERN
from contentforge_api.errors import ApiError
from contentforge_api.json_answers import json_answer
from contentforge_api.responses import AUTH, documented
from contentforge_api.schemas import ContentPage, PersonaIn, PersonaList, PersonaStats
from contentforge_api.state import ApiState, Reader, State, Writer

router = APIRouter(tags=["personas"])
PersonaId = Annotated[str, Path(pattern=PERSONA_ID_PATTERN, description="Persona id.")]


def _no_persona(persona_id: str) -> ApiError:
    return ApiError(404, f"no persona with id {persona_id!r}")


def _persona(state: ApiState, persona_id: str) -> Persona:
    found = state.repo.get_persona(persona_id)
    if found is None or found.id != persona_id:
        raise _no_persona(persona_id)
    return found


@router.get("/personas", response_model=PersonaList, responses=documented(AUTH))
def list_personas(state: State, _identity: Reader) -> PersonaList:
    items = state.repo.list_personas()
    return PersonaList(total=len(items), items=items)


@router.post(
    "/personas",
    response_model=Persona,
    status_code=status.HTTP_201_CREATED,
    responses=documented(AUTH, 409, 413, s409="A persona with this id or name exists."),
)
def create_persona(state: State, _identity: Writer, body: PersonaIn) -> Persona:
    """Create a persona; an id that exists is a 409 (personas are not overwritten through POST).

    A LoRA is ``registry:<name>`` or a hub id, checked by shape: the API never reads a file a client names.
    """
    persona = Persona.model_validate(body.model_dump())
    if persona.lora is not None:
        check_client_lora(persona.lora)  # InvalidLora: 422, the same answer whatever exists on the server
    existing = state.repo.get_persona(persona.id)
    if existing is not None and existing.id == persona.id:
        raise ApiError(409, f"persona {persona.id!r} already exists")
    try:
        state.repo.upsert_persona(persona)
    except InvalidPersona as exc:  # the name is taken by another persona
        raise ApiError(409, str(exc)) from exc
    return persona


@router.get("/personas/{persona_id}", response_model=Persona, responses=documented(AUTH, 404))
def get_persona(state: State, _identity: Reader, persona_id: PersonaId) -> Persona:
    return _persona(state, persona_id)


@router.get("/personas/{persona_id}/content", response_model=ContentPage, responses=documented(AUTH, 404))
async def persona_content(
    state: State,
    _identity: Reader,
    persona_id: PersonaId,
    tier: Verdict | None = None,
    platform: Platform | None = None,
    status: PieceStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The persona's pieces, newest batch first; ``total`` counts every match, not just this page."""
    found = await run_in_threadpool(  # the one blocking step; the rest runs on the loop (issue 18)
        state.queries.persona_content,
        persona_id,
        tier=tier.value if tier else None,
        platform=platform.value if platform else None,
        status=status.value if status else None,
        limit=limit,
        offset=offset,
    )
    if found is None:
        raise _no_persona(persona_id)
    total, items = found
    # A ContentPage, written from the query's dicts without a second validation (json_answers).
    return json_answer({"total": total, "limit": limit, "offset": offset, "items": items})


@router.get("/personas/{persona_id}/stats", response_model=PersonaStats, responses=documented(AUTH, 404))
async def persona_stats(state: State, _identity: Reader, persona_id: PersonaId) -> PersonaStats:
    stats = await run_in_threadpool(state.queries.persona_stats, persona_id)
    if stats is None:
        raise _no_persona(persona_id)
    return PersonaStats.model_validate(stats)
