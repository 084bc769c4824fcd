"""Fetch an image a user names by URL (``/content/safety-check`` with ``image_url``) to moderate it.

The request goes through brand research's ``SafeFetcher`` and so through ``contentforge.outbound``:
``http``/``https`` only, the host resolved once and every address checked (public addresses only
unless ``CONTENTFORGE_API_IMAGE_URL_ALLOW_PRIVATE``, its own opt-in: research's does not extend
here), the connection pinned to a checked address, each redirect checked again, a deadline on the
whole fetch (``CONTENTFORGE_RESEARCH_TIMEOUT_S``) and the body cut off past ``max_bytes``. What
differs from a research page: robots.txt is not consulted (the user asked for this one file, as a
browser would) and only image content types are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from contentforge.errors import InvalidInput
from contentforge.research.errors import FetchFailed, UnsupportedContent
from contentforge.research.fetch import FetchLimits, SafeFetcher

IMAGE_CONTENT_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})


@dataclass(frozen=True)
class FetchedImage:
    url: str
    final_url: str
    content_type: str
    data: bytes


class UnresolvableImageHost(FetchFailed, InvalidInput):
    """The URL's host does not resolve: the user named no reachable host (a 422, not an upstream error)."""


class ImageFetcher(SafeFetcher):
    """``SafeFetcher`` for one image: no robots.txt, image content types only."""

    private_opt_in = "CONTENTFORGE_API_IMAGE_URL_ALLOW_PRIVATE=1 (tests only)"

    def check_url(self, url: str) -> list[str]:
        try:
            return super().check_url(url)
        except FetchFailed as exc:  # SafeFetcher.check_url's only FetchFailed: the host does not resolve
            raise UnresolvableImageHost(str(exc).removeprefix(f"{url}: "), url=url) from None

    def fetch_image(self, url: str) -> FetchedImage:
        """The image's bytes, or a typed ``FetchError`` (``AddressRefused``, ``TooLarge``...): why not."""
        got = self._get(url, self.limits.max_bytes, check_robots=False, kinds=None)
        if got.status >= 400:
            raise FetchFailed(f"HTTP {got.status}", url=got.url)
        if got.content_type not in IMAGE_CONTENT_TYPES:
            raise UnsupportedContent(
                f"content type {got.content_type or 'missing'!r} is not an image this API reads "
                "(image/png, image/jpeg, image/webp)",
                url=got.url,
            )
        return FetchedImage(url=url, final_url=got.url, content_type=got.content_type, data=got.body)


def image_fetcher(limits: FetchLimits, max_bytes: int, *, allow_private: bool) -> ImageFetcher:
    """An ``ImageFetcher`` with research's time and redirect limits, ``max_bytes`` and its own opt-in
    for private addresses (``allow_private``), never research's."""
    return ImageFetcher(
        limits=replace(limits, max_bytes=max_bytes, respect_robots=False, allow_private=allow_private)
    )
