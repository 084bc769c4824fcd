"""The image a publisher sends: bytes for uploads (X), a public JPEG URL for pull APIs.

Instagram's Graph API and TikTok's photo posts fetch the image themselves from a public URL and
accept JPEG (TikTok: JPEG or WEBP), not PNG. ``public_jpeg_url`` stores a JPEG variant next to the
original (``<key>.jpg``, idempotent) and returns its public URL; a ``file://`` URL is refused with
what to configure, before any API call.
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx

from contentforge.publishing.protocol import PermanentFailure, Publication
from contentforge.storage.protocol import Storage


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

    def public_jpeg_url(self, publication: Publication) -> str:
        """A public http(s) URL of a JPEG version of the image."""
        url = publication.media_url or ""
        key = publication.storage_key
        if self.storage is not None and key:
            if not key.lower().endswith((".jpg", ".jpeg")):
                jpeg_key = f"{key.rsplit('.', 1)[0]}.jpg"
                if not self.storage.exists(jpeg_key):
                    self.storage.put(jpeg_key, to_jpeg(self.load_bytes(publication)), "image/jpeg")
                key = jpeg_key
            url = self.storage.url_for(key)
        if not url.startswith(("http://", "https://")):
            raise PermanentFailure(
                f"piece {publication.piece_id}: {publication.platform} fetches images from a public URL, "
                f"but the image is at {url or 'no URL'}; set CONTENTFORGE_PUBLIC_BASE_URL to a public "
                "http(s) address serving the data directory (or use S3/R2 storage with a CDN URL)"
            )
        return url


def to_jpeg(data: bytes, quality: int = 92) -> bytes:
    """Re-encode an image as an RGB JPEG (alpha flattened on white)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        if image.mode in ("RGBA", "LA", "P"):
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            image = flat
        else:
            image = image.convert("RGB")
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=quality)
        return out.getvalue()
