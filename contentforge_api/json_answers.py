"""Large read answers written straight from their dicts by pydantic-core, without validation.

FastAPI validates what a route returns against its response model and then serialises the model:
for a content page of 50 pieces with ~250 hooks that was a quarter of the request's CPU in the API
process (issue 18, profiled under ``benchmarks/api_reads.py``). ``contentforge_api.queries`` builds
these dicts itself, from typed columns, in the response model's exact shape (every field, in the
model's order), so the routes that return them skip the second pass: ``response_model`` still
documents the answer, and ``tests/test_read_paths.py`` holds each answer, byte for byte, to the
model's own serialisation of it.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from starlette.responses import Response


def json_answer(content: Any) -> Response:
    """``content`` (dicts, lists, datetimes, numbers) as a JSON answer, serialised as pydantic does:
    NaN and infinity as ``null``, as the models write them (``to_json`` alone writes ``NaN``, which is
    not JSON)."""
    return Response(pydantic_core.to_json(content, inf_nan_mode="null"), media_type="application/json")
