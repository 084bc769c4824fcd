"""The analytics page (``/analytics``), next to the review gallery and under the same rules.

As for the gallery: the HTML is a shell with no data, its script asks for the API token once (kept
in ``sessionStorage``, this tab only) and sends it as a bearer header; plots are fetched with it and
shown as blob URLs; every text is inserted with ``textContent``; the Content-Security-Policy is the
gallery's (this origin's script and style only).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from contentforge_api.errors import ApiError
from contentforge_api.gallery import GALLERY_CSP, STATIC_DIR, _templates, static_file_responses

STATIC_FILES = {"analytics.js": "text/javascript", "analytics.css": "text/css"}

router = APIRouter(tags=["analytics"])


@router.get("/analytics", response_class=HTMLResponse, name="analytics_page")
def analytics_page() -> HTMLResponse:
    html = _templates.get_template("analytics.html").render()
    return HTMLResponse(html, headers={"Content-Security-Policy": GALLERY_CSP, "Cache-Control": "no-store"})


@router.get(
    "/analytics/static/{name}",
    name="analytics_static",
    response_class=FileResponse,
    responses=static_file_responses(STATIC_FILES),
)
def analytics_static(name: str) -> FileResponse:
    if name not in STATIC_FILES:
        raise ApiError(404, f"no static file {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name])
