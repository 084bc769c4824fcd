"""The error answers a route can give, written once so every route documents the codes it returns.

FastAPI publishes a route's success answer and its 422 on its own; every other status a route really
returns (401 without a token, 403 for the read-only token, 404, 409, 413, 415, 502, 503...) is only in
the OpenAPI document when the route says so with ``responses=``. Routes build that argument here::

    @router.get("/things/{id}", responses=documented(AUTH, 404))

so generated clients and schema-driven fuzzers (``tests/test_api_fuzz.py``) agree with what the API
does. Every error has the one body shape of ``contentforge_api.errors`` (``ErrorBody``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request.",
    401: "No bearer token, or one the API does not know (`WWW-Authenticate: Bearer`).",
    403: "The token may not do this (the read-only token on a change or a paid model call), or, in "
    "`--insecure-local` mode, the client or `Host` is not a loopback address.",
    404: "No such resource.",
    409: "Conflicts with the resource's current state.",
    413: "Too large: the request body (`CONTENTFORGE_API_MAX_BODY_BYTES`) or an image "
    "(`CONTENTFORGE_API_MAX_IMAGE_BYTES`, or too many pixels).",
    415: "An unsupported media type (images: PNG, JPEG or WebP only).",
    422: "Invalid input: a field breaks the schema (`validation_error`, each field named, values never "
    "echoed) or a check the schema cannot express (`unknown_persona`, `invalid_input`).",
    502: "An upstream service (the Prefect server, an image host) answered with an error.",
    503: "A service this request needs is not available or not configured (`prefect_unavailable`, "
    "`deployment_missing`, `misconfigured`).",
}

AUTH = (401, 403)
"""Every route behind the bearer token: no or an unknown token (401), a token that may not (403)."""


class ErrorDetail(BaseModel):
    loc: str = Field(description="Where: `body.num_pieces`, `query.limit`...")
    msg: str
    type: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable and machine-readable: `not_found`, `validation_error`...")
    message: str = Field(description="For people: what is wrong and what to do.")
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorInfo


def documented(*codes: int | tuple[int, ...], **described: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for the given error statuses (ints or tuples such as ``AUTH``), all ``ErrorBody``.

    ``described`` overrides a description for one route: ``documented(AUTH, 404, s409="...")``.
    422 is always included: FastAPI documents it for routes with parameters, and the API also answers
    it for checks beyond the schema.
    """
    statuses: set[int] = {422}
    for code in codes:
        statuses.update(code if isinstance(code, tuple) else (code,))
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(statuses):
        description = described.get(f"s{status}") or ERROR_DESCRIPTIONS.get(status, "Error.")
        responses[status] = {"model": ErrorBody, "description": description}
    return responses
