"""Fetch web pages for brand research with limits: size, time, redirects, robots.txt and addresses.

- The address checks and the pinning are ``contentforge.outbound``'s, shared with every request
  ContentForge sends. Only ``http``/``https``. The host is resolved **once** and every address it
  resolves to is checked: private, loopback, link-local, multicast, reserved and unspecified
  addresses are refused (``AddressRefused``) unless ``allow_private`` is set (tests, an intranet).
- The connection goes to an address that was checked, never to a second lookup's answer: the
  request URL names the pinned IP, the ``Host`` header keeps the site's name, and httpx's
  ``sni_hostname`` extension keeps TLS SNI and certificate verification on that name. A DNS server
  that answers "public" for the check and "private" a moment later (DNS rebinding) therefore
  reaches nothing. Connections are not kept alive, so one verified for a name is never reused for
  another name on the same IP.
- Redirects are followed by hand, at most ``max_redirects``, and each hop is resolved, checked and
  pinned again (scheme, address, robots.txt), so a public page cannot bounce the fetcher into a
  private network.
- robots.txt is read once per origin and obeyed as RFC 9309 says, through Scrapy's ``protego``
  parser: ``*`` and ``$`` wildcards, the longest matching rule wins (``Allow`` on a tie); 4xx means
  no rules, 5xx or an unreachable file means everything is disallowed.
- The body is streamed and cut off past ``max_bytes`` (``TooLarge``), the whole fetch has a
  deadline of ``timeout_s`` (``FetchTimeout``), and only HTML, plain text, Markdown and PDF are read
  (PDF through ``contentforge.research.pdf``; one it cannot read is ``UnsupportedContent``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

import httpx
from protego import Protego

from contentforge.outbound import (
    OutboundPolicy,
    OutboundRefused,
    Resolver,
    Unresolvable,
    is_public_address,
    resolve_host,
    send_pinned,
)
from contentforge.research.errors import (
    AddressRefused,
    FetchFailed,
    FetchTimeout,
    RobotsDisallowed,
    TooLarge,
    TooManyRedirects,
    UnsupportedContent,
)
from contentforge.research.pdf import PdfUnreadable, pdf_supported, pdf_text

log = logging.getLogger(__name__)

USER_AGENT = "ContentForgeResearch/0.1 (+https://github.com/contentforge/contentforge)"
ROBOTS_AGENT = "ContentForgeResearch"
CONTENT_KINDS: dict[str, str] = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "application/pdf": "pdf",
}
_REDIRECTS = {301, 302, 303, 307, 308}
_ROBOTS_MAX_BYTES = 512_000

__all__ = ["FetchLimits", "FetchedDocument", "SafeFetcher", "is_public_address", "resolve_host"]


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 2_000_000
    timeout_s: float = 15.0
    max_redirects: int = 5
    allow_private: bool = False
    respect_robots: bool = True
    user_agent: str = USER_AGENT

    @classmethod
    def from_settings(cls, settings: Any) -> FetchLimits:
        return cls(
            max_bytes=settings.research_max_bytes,
            timeout_s=settings.research_timeout_s,
            max_redirects=settings.research_max_redirects,
            allow_private=settings.research_allow_private,
        )


@dataclass(frozen=True)
class FetchedDocument:
    """A fetched page: the URL asked for, where it ended up, its kind and its decoded body."""

    url: str
    final_url: str
    kind: str
    """``html``, ``text``, ``markdown`` or ``pdf`` (then ``body`` is the extracted text)."""
    body: str
    size: int
    redirects: tuple[str, ...] = ()


@dataclass
class SafeFetcher:
    """Fetches pages within ``limits``; one instance caches robots.txt per origin."""

    limits: FetchLimits = field(default_factory=FetchLimits)
    resolver: Resolver = resolve_host
    _robots: dict[str, Protego | None] = field(default_factory=dict)
    private_opt_in: ClassVar[str] = "CONTENTFORGE_RESEARCH_ALLOW_PRIVATE=1 (tests, an intranet you trust)"
    """What a refusal of a private address tells the user to set (subclasses fetch for other callers)."""

    # --- checks ------------------------------------------------------------------------------
    def check_url(self, url: str) -> list[str]:
        """Resolve the URL's host once and check scheme and every address; returns the addresses.

        A refusal is an ``AddressRefused`` (an ``InvalidInput``). ``allow_private`` skips the address
        check, not the resolution: the fetch is pinned to these addresses either way.
        """
        policy = OutboundPolicy(
            setting="brand research",
            allow_private=self.limits.allow_private,
            opt_in=self.private_opt_in,
            resolver=self.resolver,
        )
        try:
            return policy.addresses(url)
        except OutboundRefused as exc:
            raise AddressRefused(str(exc).removeprefix("brand research: "), url=url) from None
        except Unresolvable as exc:
            raise FetchFailed(str(exc), url=url) from None

    def allowed_by_robots(self, url: str) -> bool:
        if not self.limits.respect_robots:
            return True
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._robots:
            self._robots[origin] = self._load_robots(origin)
        parser = self._robots[origin]
        if parser is None:  # unreachable or 5xx: RFC 9309 says assume complete disallow
            return False
        return bool(parser.can_fetch(url, ROBOTS_AGENT))

    def _load_robots(self, origin: str) -> Protego | None:
        robots_url = f"{origin}/robots.txt"
        try:
            got = self._get(robots_url, _ROBOTS_MAX_BYTES, check_robots=False, kinds=None)
        except (FetchFailed, FetchTimeout, TooLarge, TooManyRedirects) as exc:
            log.warning("robots.txt of %s unreachable (%s): treating the site as disallowed", origin, exc)
            return None
        if got.status >= 500:
            log.warning("robots.txt of %s answered %s: treating the site as disallowed", origin, got.status)
            return None
        if got.status >= 400:
            return Protego.parse("")  # RFC 9309: an unavailable robots.txt means no rules
        return Protego.parse(got.body.decode("utf-8", "replace"))

    # --- fetching ----------------------------------------------------------------------------
    def fetch(self, url: str) -> FetchedDocument:
        """Fetch ``url`` within the limits, or raise the typed ``FetchError`` that says why not."""
        got = self._get(url, self.limits.max_bytes, check_robots=True, kinds=CONTENT_KINDS)
        if got.status >= 400:
            raise FetchFailed(f"HTTP {got.status}", url=got.url)
        kind = CONTENT_KINDS[got.content_type]
        if kind == "pdf":
            try:
                text = pdf_text(got.body, got.url)
            except PdfUnreadable as exc:  # a fetched page that cannot be read is skipped, not fatal
                raise UnsupportedContent(str(exc), url=got.url) from None
        else:
            text = got.body.decode(got.charset or "utf-8", "replace")
        return FetchedDocument(
            url=url, final_url=got.url, kind=kind, body=text, size=len(got.body), redirects=got.redirects
        )

    def _get(
        self, url: str, max_bytes: int, *, check_robots: bool, kinds: dict[str, str] | None
    ) -> _Response:
        deadline = time.monotonic() + self.limits.timeout_s
        redirects: list[str] = []
        current = url
        headers = {"user-agent": self.limits.user_agent, "accept": "text/html,text/plain,text/markdown;q=0.9"}
        timeout = httpx.Timeout(self.limits.timeout_s)
        # No keep-alive: a pooled connection is keyed by the pinned IP, and one whose TLS was verified
        # for one name must not carry a request for another name served from the same IP.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(
            timeout=timeout, follow_redirects=False, headers=headers, trust_env=False, limits=no_reuse
        ) as client:
            while True:
                if time.monotonic() > deadline:
                    raise FetchTimeout(f"slower than {self.limits.timeout_s}s", url=current)
                addresses = self.check_url(current)
                if check_robots and not self.allowed_by_robots(current):
                    raise RobotsDisallowed(
                        f"robots.txt disallows this page for {ROBOTS_AGENT}; it is not fetched", url=current
                    )
                try:
                    with contextlib.closing(send_pinned(client, "GET", current, addresses)) as response:
                        if response.status_code in _REDIRECTS and "location" in response.headers:
                            redirects.append(urljoin(current, response.headers["location"]))
                            if len(redirects) > self.limits.max_redirects:
                                raise TooManyRedirects(
                                    f"more than {self.limits.max_redirects} redirects "
                                    "(CONTENTFORGE_RESEARCH_MAX_REDIRECTS)",
                                    url=url,
                                )
                            current = redirects[-1]
                            continue
                        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                        if kinds is not None and response.status_code < 400:
                            _check_kind(content_type, kinds, current)
                        declared = response.headers.get("content-length", "")
                        if declared.isdigit() and int(declared) > max_bytes:
                            raise TooLarge(
                                f"{declared} bytes declared, the limit is {max_bytes} "
                                "(CONTENTFORGE_RESEARCH_MAX_BYTES)",
                                url=current,
                            )
                        body = bytearray()
                        for chunk in response.iter_bytes():
                            body.extend(chunk)
                            if len(body) > max_bytes:
                                raise TooLarge(
                                    f"more than {max_bytes} bytes (CONTENTFORGE_RESEARCH_MAX_BYTES)",
                                    url=current,
                                )
                            if time.monotonic() > deadline:
                                raise FetchTimeout(f"slower than {self.limits.timeout_s}s", url=current)
                        return _Response(
                            status=response.status_code,
                            url=current,
                            body=bytes(body),
                            content_type=content_type,
                            charset=response.charset_encoding,
                            redirects=tuple(redirects),
                        )
                except httpx.TimeoutException:
                    raise FetchTimeout(f"no answer within {self.limits.timeout_s}s", url=current) from None
                except httpx.HTTPError as exc:
                    raise FetchFailed(f"{type(exc).__name__}: {exc}", url=current) from None


@dataclass(frozen=True)
class _Response:
    status: int
    url: str
    body: bytes
    content_type: str
    charset: str | None
    redirects: tuple[str, ...]


def _check_kind(content_type: str, kinds: dict[str, str], url: str) -> None:
    if content_type not in kinds:
        raise UnsupportedContent(
            f"content type {content_type or 'missing'!r} is not read; research reads HTML, plain text and "
            "Markdown (PDF with pypdf installed)",
            url=url,
        )
    if kinds[content_type] == "pdf" and not pdf_supported():
        raise UnsupportedContent("PDF needs the pure-python package pypdf (pip install pypdf)", url=url)
