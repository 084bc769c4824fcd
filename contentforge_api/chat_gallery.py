"""The conversations page of the review gallery (``/gallery/conversations``): read, take over,
reply as a person, hand back.

The same security model as ``contentforge_api.gallery`` (its docstring has the reasons): the HTML is
a shell with no data, served without a token; its script asks for the API token, keeps it in
``sessionStorage`` and sends it as a bearer header to the ``/api/v1/dm`` routes, which check it;
users' messages are inserted with ``textContent``; the page's Content-Security-Policy (the gallery's)
allows only this origin's script and style.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from contentforge_api.errors import ApiError
from contentforge_api.gallery import GALLERY_CSP, PACKAGE_DIR, STATIC_DIR, static_file_responses

_templates = Environment(
    loader=FileSystemLoader(PACKAGE_DIR / "templates"), autoescape=select_autoescape(["html"], default=True)
)
router = APIRouter(tags=["gallery"])
STATIC_FILES = {"conversations.js": "text/javascript", "conversations.css": "text/css"}


@router.get("/gallery/conversations", response_class=HTMLResponse, name="conversations_page")
def conversations_page() -> HTMLResponse:
    html = _templates.get_template("conversations.html").render()
    return HTMLResponse(html, headers={"Content-Security-Policy": GALLERY_CSP, "Cache-Control": "no-store"})


@router.get(
    "/gallery/chat/static/{name}",
    name="conversations_static",
    response_class=FileResponse,
    responses=static_file_responses(STATIC_FILES),
)
def conversations_static(name: str) -> FileResponse:
    if name not in STATIC_FILES:
        raise ApiError(404, f"no static file {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name])
