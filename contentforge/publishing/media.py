"""The image a publisher sends: bytes for uploads (X), a public JPEG URL for pull APIs.

Instagram's Graph API and TikTok's photo posts fetch the image themselves from a public URL and
accept JPEG (TikTok: JPEG or WEBP), not PNG. ``public_rendition_url`` stores the platform's
rendition next to the original (idempotent, provenance kept) and returns its public URL; a
``file://`` URL is refused with what to configure, before any API call.

Every image sent is the one moderation judged: ``load_bytes`` checks the bytes against the piece's
``content_sha256`` (carried in ``Publication``) and refuses others (a late write by a stalled run, a
file replaced by hand), and renditions are only made from checked bytes. There is no download
fallback: ``media_url`` is a URL ContentForge hands out, not one it requests (no outbound URL
policy covers it), and the bytes must come from the configured storage (or a ``file://`` URL).

The image is the one bound when the publication was scheduled (``cover_binding``): the piece's own,
or the chosen cover from one of its variations. Its storage key and sha256 are in ``Publication``,
and its rendition is stored under the image's own piece (``image_piece_id``), so a cover's rendition
is never mistaken for one of the piece's own image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from contentforge.errors import InvalidInput
from contentforge.publishing.cover_binding import bound_image
from contentforge.publishing.protocol import PermanentFailure, Publication
from contentforge.storage.protocol import Storage
from contentforge.storage.renditions import store_renditions


def image_piece_id(publication: Publication) -> str:
    """The piece whose image the publication posts: its own, or the variation bound as its cover."""
    image = bound_image(publication.detail)
    return str(image["piece_id"]) if image else publication.piece_id


class MediaResolver:
    """Loads and converts a publication's image through the configured storage."""

    def __init__(self, storage: Storage | None) -> None:
        self.storage = storage

    def load_bytes(self, publication: Publication) -> bytes:
        """The stored image's bytes (from storage, else a ``file://`` ``media_url``), checked
        against the image moderation judged; ``PermanentFailure`` when missing or different."""
        data = self._stored_bytes(publication)
        if data is None:
            raise PermanentFailure(
                f"piece {publication.piece_id}: image not found (key {publication.storage_key!r})"
            )
        if publication.content_sha256 is None:
            raise PermanentFailure(
                f"piece {publication.piece_id}: no hash of the image moderation judged is recorded; "
                "moderate it again"
            )
        if hashlib.sha256(data).hexdigest() != publication.content_sha256:
            raise PermanentFailure(
                f"piece {publication.piece_id}: the stored image differs from the one moderation "
                "judged; moderate it again"
            )
        return data

    def _stored_bytes(self, publication: Publication) -> bytes | None:
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
        return None

    def public_rendition_url(self, publication: Publication) -> str:
        """A public http(s) URL of the platform's rendition of the image (JPEG for Instagram).

        The rendition (``storage/renditions.py``) is cropped into the platform's aspect range, sized
        and encoded within its limits, carries the original's AI provenance, and is stored next to
        the original once (``content/{persona}/{piece}.{platform}.{ext}``); a rerun reuses it.
        """
        if self.storage is None or not publication.storage_key:
            raise PermanentFailure(
                f"piece {publication.piece_id}: {publication.platform} fetches the image from a URL, "
                "and only a rendition stored from the checked original may be handed out; the piece "
                "has no stored image (configure the storage it was generated into)"
            )
        try:
            stored = store_renditions(
                self.storage,
                publication.persona_id,
                image_piece_id(publication),
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
