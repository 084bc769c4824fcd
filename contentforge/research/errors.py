"""Typed errors of brand research: each says which URL and what to do about it."""

from __future__ import annotations

from contentforge.errors import ContentForgeError, InvalidInput


class FetchError(ContentForgeError):
    """A page could not be fetched; ``url`` names it."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url


class AddressRefused(FetchError, InvalidInput):
    """The URL's host resolves to a private, loopback, link-local or otherwise non-public address.

    Set ``CONTENTFORGE_RESEARCH_ALLOW_PRIVATE=1`` only for tests or an intranet you trust."""


class RobotsDisallowed(FetchError):
    """robots.txt of the site disallows this path for our user agent."""


class TooLarge(FetchError):
    """The response is bigger than ``CONTENTFORGE_RESEARCH_MAX_BYTES``."""


class TooManyRedirects(FetchError):
    """More redirects than ``CONTENTFORGE_RESEARCH_MAX_REDIRECTS``."""


class UnsupportedContent(FetchError):
    """A content type that research does not read (only HTML, plain text and Markdown; PDF with pypdf)."""


class FetchTimeout(FetchError):
    """The page took longer than ``CONTENTFORGE_RESEARCH_TIMEOUT_S``."""


class FetchFailed(FetchError):
    """An HTTP error status or a network error."""
