"""Download one model file: streamed to a temp file, size-capped, resumed, SHA-256 checked, never a pickle.

The file is written to ``<dest>.part`` and only renamed to ``dest`` once its SHA-256 matches what the hub
announced, so a file in its final place is always a verified one and a crash leaves only a ``.part``.
A broken connection is resumed with an HTTP ``Range`` request when the server answers 206; a server
that ignores ``Range`` (200) makes the download start over. A download over ``max_bytes`` is stopped
as soon as the announced length or the bytes received pass it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from contentforge.images.safety import PICKLE_SUFFIXES, SAFE_SUFFIXES
from contentforge.models.errors import (
    DownloadRefused,
    HashMismatch,
    HubError,
    HubRateLimited,
    HubUnauthorized,
)
from contentforge.retry_after import retry_after_seconds

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
RESUME_ATTEMPTS = 4
"""Connections a download may use in all: the first and up to three resumes."""
TEXT_SUFFIXES = frozenset({".json", ".txt", ".model", ".md"})
"""Small files a diffusers folder holds next to its weights (configs, tokenizer vocabularies)."""


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int
    resumed: int
    """How many times the transfer was resumed with a Range request."""


def same_origin(url: str, base: str) -> bool:
    """Whether ``url`` has ``base``'s scheme, host and port: where a hub's token may be sent.

    A hub's answer names its files' URLs; a token must not follow one to another host (httpx drops
    ``Authorization`` on cross-origin *redirects* only, not on the first request).
    """
    try:
        target, home = httpx.URL(url), httpx.URL(base)
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    return (target.scheme, target.host, target.port) == (home.scheme, home.host, home.port)


def check_file_name(name: str) -> None:
    """Refuse pickle formats (and anything that is neither safetensors nor a config/tokenizer file)."""
    suffix = Path(name).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise DownloadRefused(
            f"{name}: pickle format ({suffix}) refused, loading it can run arbitrary code; "
            "choose a .safetensors file"
        )
    if suffix not in SAFE_SUFFIXES | TEXT_SUFFIXES:
        raise DownloadRefused(f"{name}: only .safetensors weights (and json/txt configs) are downloaded")


def raise_for_hub_status(response: httpx.Response, what: str) -> None:
    """One typed, one-line error per failing status; the URL's query (tokens) is never shown."""
    status = response.status_code
    if status < 400:
        return
    if status in (401, 403):
        raise HubUnauthorized(f"{what}: refused ({status}); set or check the API token")
    if status == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        after = f"; retry after {wait:.0f} s" if wait is not None else ""
        raise HubRateLimited(f"{what}: rate limited (429){after}", retry_after=wait)
    if status == 404:
        raise HubError(f"{what}: not found (404)")
    raise HubError(f"{what}: the hub answered {status}")


def download(
    client: httpx.Client,
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None,
    max_bytes: int,
    headers: dict[str, str] | None = None,
    require_hash: bool = True,
) -> Downloaded:
    """Fetch ``url`` into ``dest``; raises before ``dest`` exists unless every check passed.

    ``expected_sha256`` is the hub's hash; ``require_hash`` refuses weights the hub gives none for (small
    config files may go without: they are parsed, never executed).
    """
    check_file_name(dest.name)
    if expected_sha256 is None and require_hash:
        raise DownloadRefused(f"{dest.name}: the hub announces no SHA-256, so it cannot be verified")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed = 0
    for attempt in range(RESUME_ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        request_headers = dict(headers or {})
        if have:
            request_headers["Range"] = f"bytes={have}-"
        try:
            with client.stream("GET", url, headers=request_headers) as response:
                if response.status_code == 416 and have:
                    break  # the part file already holds every byte
                raise_for_hub_status(response, f"download of {dest.name}")
                if have and response.status_code == 206:
                    resumed += 1
                    mode = "ab"
                else:
                    have, mode = 0, "wb"  # 200: the server ignores Range; start over
                length = response.headers.get("Content-Length")
                if length is not None and have + int(length) > max_bytes:
                    part.unlink(missing_ok=True)
                    raise DownloadRefused(
                        f"{dest.name}: {int(length) + have} bytes is over the download cap of {max_bytes} "
                        "bytes (CONTENTFORGE_MODELS_MAX_DOWNLOAD_MB)"
                    )
                written = have
                with part.open(mode) as handle:
                    for chunk in response.iter_bytes():  # as received: a break keeps what arrived
                        written += len(chunk)
                        if written > max_bytes:
                            handle.close()
                            part.unlink(missing_ok=True)
                            raise DownloadRefused(
                                f"{dest.name}: more than the download cap of {max_bytes} bytes "
                                "(CONTENTFORGE_MODELS_MAX_DOWNLOAD_MB)"
                            )
                        handle.write(chunk)
            break
        except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
            if attempt == RESUME_ATTEMPTS - 1:
                raise HubError(
                    f"download of {dest.name} kept failing ({type(exc).__name__}); run the install again "
                    "to resume it"
                ) from exc
            logger.info("download of %s broke after %d bytes; resuming", dest.name, _size(part))
    digest = _sha256(part)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        part.unlink(missing_ok=True)
        raise HashMismatch(
            f"{dest.name}: SHA-256 {digest[:12]}… does not match the hub's {expected_sha256.lower()[:12]}…; "
            "the download was corrupted or the file changed, and was discarded"
        )
    size = part.stat().st_size
    os.replace(part, dest)
    return Downloaded(path=dest, sha256=digest, size=size, resumed=resumed)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
