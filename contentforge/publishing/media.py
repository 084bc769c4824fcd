"""The image a publisher sends: bytes for uploads (X), a public JPEG URL for pull APIs.

Instagram's Graph API and TikTok's photo posts fetch the image themselves from a public URL and
accept JPEG (TikTok: JPEG or WEBP), not PNG. ``public_rendition_url`` stores the platform's
rendition next to the original (idempotent, provenance kept) and returns its public URL; a
``file://`` URL is refused with what to configure, before any API call.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from contentforge.errors import InvalidInput
from contentforge.publishing.protocol import PermanentFailure, Publication
from contentforge.storage.protocol import Storage
from contentforge.storage.renditions import store_renditions


class MediaResolver:
    """Loads and converts a publication's image through the configured storage."""

    def __init__(self, storage: Storage | None) -> None:
        self.storage = storage

    def load_bytes(self, publication: Publication) -> bytes:
        """The stored image's bytes (from storage, else downloaded from ``media_url``)."""
        if (
            self.storage is not None
            and publication.storage_key
            and self.storage.exists(publication.storage_key)
        ):
            return self.storage.get(publication.storage_key)
        url = publication.media_url or ""
        if url.startswith("file://"):
            path = Path(httpx.URL(url).path)
            if path.is_file():
                return path.read_bytes()
        if url.startswith(("http://", "https://")):
            response = httpx.get(url, timeout=30.0, follow_redirects=True)
            if response.is_success:
                return response.content
        raise PermanentFailure(
            f"piece {publication.piece_id}: image not found (key {publication.storage_key!r})"
        )

    def public_rendition_url(self, publication: Publication) -> str:
        """A public http(s) URL of the platform's rendition of the image (JPEG for Instagram).

        The rendition (``storage/renditions.py``) is cropped into the platform's aspect range, sized
        and encoded within its limits, carries the original's AI provenance, and is stored next to
        the original once (``content/{persona}/{piece}.{platform}.{ext}``); a rerun reuses it.
        """
        url = publication.media_url or ""
        if self.storage is not None and publication.storage_key:
            try:
                stored = store_renditions(
                    self.storage,
                    publication.persona_id,
                    publication.piece_id,
                    self.load_bytes(publication),
                    [publication.platform],
                )
            except InvalidInput as exc:
                raise PermanentFailure(f"piece {publication.piece_id}: {exc}") from exc
            url = stored[publication.platform].url
        if not url.startswith(("http://", "https://")):
            raise PermanentFailure(
                f"piece {publication.piece_id}: {publication.platform} fetches images from a public URL, "
                f"but the image is at {url or 'no URL'}; set CONTENTFORGE_PUBLIC_BASE_URL to a public "
                "http(s) address serving the data directory (or use S3/R2 storage with a CDN URL)"
            )
        return url
