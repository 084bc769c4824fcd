"""The review gallery (``/gallery/batches/{batch_id}``) and the local content files it shows.

Security model:

* The HTML page is a shell with no data in it, so it is served without a token. Its script
  (``/gallery/static/gallery.js``, no inline script) asks for the API token once, keeps it in
  ``sessionStorage`` (this tab only, gone when it closes) and sends it as ``Authorization: Bearer``
  with every call. Browsers never add that header by themselves, so another site cannot make a
  credentialed request on the reviewer's behalf: there is nothing for CSRF to ride on.
* Every text (hooks, reasons, ids) is inserted with ``textContent``, never as HTML, and the page's
  Content-Security-Policy allows only this origin's script and style: a hook containing markup is
  shown as text and cannot run.
* Images under ``/content/...`` also need the token; the script fetches them and shows blob URLs.
  Keys are validated (safe segments, no ``..``, no absolute paths) and resolved inside the storage
  root, and only image types are served, so no other file of the data directory is reachable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from contentforge.config import Settings
from contentforge.domain.models import ID_PATTERN
from contentforge.errors import InvalidInput
from contentforge.storage import LocalStorage, validate_key
from contentforge.summary import gallery_url
from contentforge_api.errors import ApiError
from contentforge_api.responses import AUTH, documented
from contentforge_api.state import CONTENT_ROUTE, Reader, State

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
STATIC_FILES = {"common.js": "text/javascript", "gallery.js": "text/javascript", "gallery.css": "text/css"}
IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}
GALLERY_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: https:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


def static_file_responses(files: dict[str, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route serving one of ``files`` (name -> media type) by name.

    The page's assets are routes rather than a ``StaticFiles`` mount so that only the listed files
    are reachable; documenting their media types and the 404 for any other name keeps the OpenAPI
    document true to what they answer.
    """
    return {200: {"content": {media: {} for media in sorted(set(files.values()))}}, **documented(404)}


_templates = Environment(
    loader=FileSystemLoader(PACKAGE_DIR / "templates"),
    autoescape=select_autoescape(["html"], default=True),
)

router = APIRouter(tags=["gallery"])


def gallery_path(settings: Settings, request: Request, batch_id: str) -> str:
    """The gallery URL as the caller reaches this API (or the configured public URL)."""
    if settings.api_public_url:
        return gallery_url(settings, batch_id)
    return str(request.url_for("gallery_page", batch_id=batch_id))


@router.get("/gallery/batches/{batch_id}", response_class=HTMLResponse, name="gallery_page")
async def gallery_page(batch_id: Annotated[str, PathParam(pattern=ID_PATTERN)]) -> HTMLResponse:
    # Async: rendering a cached template is quick work on the loop, not worth a threadpool hop.
    html = _templates.get_template("gallery.html").render(batch_id=batch_id)
    return HTMLResponse(html, headers={"Content-Security-Policy": GALLERY_CSP, "Cache-Control": "no-store"})


@router.get(
    "/gallery/static/{name}",
    name="gallery_static",
    response_class=FileResponse,
    responses=static_file_responses(STATIC_FILES),
)
def gallery_static(name: str) -> FileResponse:
    if name not in STATIC_FILES:
        raise ApiError(404, f"no static file {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name])


@router.get(
    CONTENT_ROUTE + "/{path:path}",
    name="content_file",
    response_class=FileResponse,
    responses={200: {"content": {t: {} for t in sorted(set(IMAGE_TYPES.values()))}}, **documented(AUTH, 404)},
)
def content_file(state: State, _identity: Reader, path: str) -> FileResponse:
    """A stored image from local storage (``content/...`` keys only; token required)."""
    not_found = ApiError(404, "no such content file")
    if state.settings.storage_backend != "local":
        raise not_found
    try:
        validate_key(f"content/{path}")
        # Rooted at the content folder, so even a symlink cannot lead to the database next to it.
        file = LocalStorage(state.settings.content_dir).path_for(path)
    except InvalidInput:
        raise not_found from None
    media_type = IMAGE_TYPES.get(file.suffix.lower().lstrip("."))
    if media_type is None or not file.is_file():
        raise not_found
    return FileResponse(file, media_type=media_type, headers={"Cache-Control": "private, max-age=300"})
