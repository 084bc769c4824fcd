"""The template library: list with filters, or one template by id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import StringConstraints

from contentforge.catalog import filter_templates, load_templates
from contentforge.domain.models import TEMPLATE_ID_PATTERN, Template, TemplateTier
from contentforge_api.errors import ApiError
from contentforge_api.responses import AUTH, documented
from contentforge_api.schemas import TemplateList
from contentforge_api.state import Reader, State

router = APIRouter(tags=["templates"])


@router.get(
    "/templates",
    response_model=TemplateList,
    responses=documented(AUTH, 404, s404="`persona` names no persona."),
)
def list_templates(
    state: State,
    _identity: Reader,
    category: Annotated[str | None, Query(max_length=60)] = None,
    tier: TemplateTier | None = None,
    persona: Annotated[
        str | None, Query(max_length=120, description="Persona id or name: templates for its niche.")
    ] = None,
    tag: Annotated[
        list[Annotated[str, StringConstraints(max_length=60)]] | None,
        Query(max_length=20, description="Repeat for several."),
    ] = None,
) -> TemplateList:
    """Templates matching every filter; ``persona`` keeps those tagged with the persona's niche."""
    niche = None
    if persona is not None:
        found = state.repo.get_persona(persona)
        if found is None:
            raise ApiError(404, f"unknown persona {persona!r}")
        niche = found.niche
    items = filter_templates(load_templates(), category=category, tier=tier, tags=tag or (), niche=niche)
    return TemplateList(total=len(items), items=items)


@router.get("/templates/{template_id}", response_model=Template, responses=documented(AUTH, 404))
def get_template(
    _identity: Reader, template_id: Annotated[str, Path(pattern=TEMPLATE_ID_PATTERN)]
) -> Template:
    for template in load_templates():
        if template.id == template_id:
            return template
    raise ApiError(404, f"no template with id {template_id!r}")
