"""Loopback fakes of the Hugging Face Hub API and CivitAI's REST API, serving real safetensors files.

Each speaks the documented contract the clients use: HF ``GET /api/models`` (search, filter, sort,
limit, full), ``GET /api/models/{repo}`` (with ``blobs``: siblings with size and LFS sha256) and
``GET /{repo}/resolve/{revision}/{file}``; CivitAI ``GET /api/v1/models`` (query, types, baseModels,
nsfw, limit), ``GET /api/v1/model-versions/{id}`` and ``GET /api/download/models/{id}``. Downloads
honour ``Range: bytes=N-`` with 206. Faults are scripted per file: a token required (401), rate
limited (429 with Retry-After), corrupted bytes (the announced hash no longer matches), and a
connection that breaks halfway through the first transfer.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support.loopback import LoopbackServer


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class Blob:
    data: bytes
    require_token: str | None = None
    rate_limited: bool = False
    corrupt: bool = False
    break_first: bool = False
    hold_first: threading.Event | None = None
    """When set, the first transfer waits (up to 30 s) for the event: an install caught mid-download."""
    held: bool = False
    served: int = 0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class HubWorld:
    """Everything both fakes serve, and every request they saw."""

    hf_repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    civitai_models: list[dict[str, Any]] = field(default_factory=list)
    blobs: dict[str, Blob] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""
    download_base: str = ""
    """Where CivitAI's ``downloadUrl``s point when set (another origin, as a CDN would be); else ``base``."""

    # -- Hugging Face ---------------------------------------------------------------------------

    def add_hf_repo(
        self, repo_id: str, files: dict[str, bytes], *, tags: list[str], card: dict[str, Any] | None = None
    ) -> None:
        sha = hashlib.sha1(repo_id.encode()).hexdigest()
        for name, data in files.items():
            self.blobs[f"/{repo_id}/resolve/{sha}/{name}"] = Blob(data)
        self.hf_repos[repo_id] = {"sha": sha, "tags": tags, "card": card or {}, "files": files}

    def hf_info(self, repo_id: str, *, blobs: bool) -> dict[str, Any]:
        repo = self.hf_repos[repo_id]
        siblings = []
        for name, data in repo["files"].items():
            sibling: dict[str, Any] = {"rfilename": name}
            if blobs:
                sibling["size"] = len(data)
                sibling["blobId"] = hashlib.sha1(data).hexdigest()
                if name.endswith(".safetensors"):
                    sha = hashlib.sha256(data).hexdigest()
                    sibling["lfs"] = {"sha256": sha, "size": len(data), "pointerSize": 134}
            siblings.append(sibling)
        return {
            "_id": repo["sha"][:24],
            "id": repo_id,
            "modelId": repo_id,
            "sha": repo["sha"],
            "tags": repo["tags"],
            "downloads": 1000 - len(repo_id),
            "likes": 7,
            "private": False,
            "library_name": "diffusers",
            "siblings": siblings,
            "cardData": repo["card"],
        }

    # -- CivitAI --------------------------------------------------------------------------------

    def add_civitai(
        self,
        model_id: int,
        name: str,
        *,
        type_: str,
        version_id: int,
        base_model: str,
        file_name: str,
        data: bytes,
        trained_words: list[str] | None = None,
        nsfw: bool = False,
        tags: list[str] | None = None,
        description: str = "",
        fmt: str = "SafeTensor",
        **faults: Any,
    ) -> Blob:
        blob = Blob(data, **faults)
        path = f"/api/download/models/{version_id}"
        self.blobs[path] = blob
        version = {
            "id": version_id,
            "modelId": model_id,
            "name": "v1.0",
            "baseModel": base_model,
            "nsfwLevel": 16 if nsfw else 1,
            "trainedWords": trained_words or [],
            "stats": {"downloadCount": 42, "thumbsUpCount": 9, "thumbsDownCount": 1},
            "files": [
                {
                    "name": file_name,
                    "sizeKB": len(data) / 1024,
                    "type": "Model",
                    "metadata": {"format": fmt, "fp": "fp16", "size": "pruned"},
                    "hashes": {"SHA256": hashlib.sha256(data).hexdigest().upper(), "CRC32": "00000000"},
                    "downloadUrl": "",  # filled with the server's address by url_of
                    "primary": True,
                }
            ],
            "downloadUrl": "",
        }
        self.civitai_models.append(
            {
                "id": model_id,
                "name": name,
                "description": f"<p>{description}</p>",
                "type": type_,
                "nsfw": nsfw,
                "poi": False,
                "allowCommercialUse": "Image",
                "tags": tags or [],
                "stats": {"downloadCount": 42, "rating": 4.5, "ratingCount": 10},
                "modelVersions": [version],
            }
        )
        return blob

    def civitai_version(self, version_id: int) -> dict[str, Any] | None:
        for model in self.civitai_models:
            for version in model["modelVersions"]:
                if version["id"] == version_id:
                    item = {k: model[k] for k in ("name", "type", "nsfw", "poi")}
                    return {**self._linked(version), "model": item}
        return None

    def _linked(self, version: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.download_base or self.base}/api/download/models/{version['id']}"
        files = [{**f, "downloadUrl": url} for f in version["files"]]
        return {**version, "files": files, "downloadUrl": url}


class FakeHubs(LoopbackServer):
    """Both hubs on one loopback port (their paths do not overlap)."""

    def __init__(self, world: HubWorld) -> None:
        self.world = world
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer._handle(self)

        self._serve(Handler)
        world.base = f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.world.base

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        world = self.world
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with world.lock:
            world.seen.append(Seen("GET", parts.path, query, headers))
        path = parts.path
        if path == "/api/models":
            self._hf_search(handler, query)
        elif path.startswith("/api/models/"):
            repo_id = path.removeprefix("/api/models/")
            if repo_id not in world.hf_repos:
                _json(handler, 404, {"error": "Repository not found"})
            else:
                _json(handler, 200, world.hf_info(repo_id, blobs="blobs" in query))
        elif path == "/api/v1/models":
            self._civitai_search(handler, query)
        elif path.startswith("/api/v1/models/"):
            wanted = int(path.rsplit("/", 1)[1])
            model = next((m for m in world.civitai_models if m["id"] == wanted), None)
            _json(handler, 200 if model else 404, model or {"error": "Model not found"})
        elif path.startswith("/api/v1/model-versions/"):
            version = world.civitai_version(int(path.rsplit("/", 1)[1]))
            _json(handler, 200 if version else 404, version or {"error": "Model not found"})
        elif path in world.blobs:
            _serve_blob(handler, world.blobs[path], headers)
        else:
            _json(handler, 404, {"error": "not found"})

    def _hf_search(self, handler: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        world = self.world
        search = query.get("search", [""])[0].lower()
        wanted = query.get("filter", [])
        found = []
        for repo_id, repo in world.hf_repos.items():
            text = " ".join([repo_id, *repo["tags"]]).lower()
            if search and search not in text:
                continue
            if any(f not in repo["tags"] for f in wanted):
                continue
            found.append(world.hf_info(repo_id, blobs=False))
        if query.get("sort", [""])[0] == "downloads":
            found.sort(key=lambda item: -item["downloads"])
        _json(handler, 200, found[: int(query.get("limit", ["100"])[0])])

    def _civitai_search(self, handler: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        world = self.world
        text = query.get("query", [""])[0].lower()
        types = query.get("types", [])
        bases = query.get("baseModels", [])
        items = []
        for model in world.civitai_models:
            if text and text not in (model["name"] + " " + " ".join(model["tags"])).lower():
                continue
            if types and model["type"] not in types:
                continue
            if bases and model["modelVersions"][0]["baseModel"] not in bases:
                continue
            items.append({**model, "modelVersions": [world._linked(v) for v in model["modelVersions"]]})
        # Like the real API, the nsfw parameter is a browsing preference; the client must still filter.
        _json(handler, 200, {"items": items, "metadata": {"nextCursor": None}})


def _json(
    handler: BaseHTTPRequestHandler, status: int, payload: Any, extra: dict[str, str] | None = None
) -> None:
    body = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (extra or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def _serve_blob(handler: BaseHTTPRequestHandler, blob: Blob, headers: dict[str, str]) -> None:
    if blob.require_token and headers.get("authorization") != f"Bearer {blob.require_token}":
        _json(handler, 401, {"error": "Unauthorized: this file needs an API token"})
        return
    if blob.rate_limited:
        _json(handler, 429, {"error": "Too many requests"}, {"Retry-After": "17"})
        return
    if blob.hold_first is not None and not blob.held:
        blob.held = True  # later requests are not held
        blob.hold_first.wait(30)
    data = bytes(reversed(blob.data)) if blob.corrupt else blob.data
    start = 0
    status = 200
    if headers.get("range", "").startswith("bytes="):
        start = int(headers["range"].removeprefix("bytes=").split("-", 1)[0])
        status = 206
    body = data[start:]
    blob.served += 1
    handler.send_response(status)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(len(body)))
    if status == 206:
        handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    handler.end_headers()
    if blob.break_first and blob.served == 1:
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True
        return
    handler.wfile.write(body)
