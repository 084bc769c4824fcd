"""Research a brand: fetch its pages (and a few same-site pages they link to), read uploaded documents.

The URLs a user gives are checked before anything is fetched: a refused address is an
``InvalidInput``. Pages found by following links (about, mission, products, contact...) are
best effort: a page that robots.txt disallows or that fails is skipped and logged.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

from contentforge.errors import InvalidInput
from contentforge.research.documents import load_document
from contentforge.research.errors import AddressRefused, FetchError
from contentforge.research.fetch import SafeFetcher
from contentforge.research.html_text import PageContent, parse_document

log = logging.getLogger(__name__)

_INTERESTING = re.compile(
    r"/(about|about-us|our-story|story|mission|values|brand|products?|shop|collections?|services|"
    r"contact|team|who-we-are|sustainability|press)(/|$|\.html?$)",
    re.IGNORECASE,
)


@dataclass
class Sources:
    """What was read, and what was skipped and why (``(url, reason)``)."""

    pages: list[PageContent] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _same_site_links(page: PageContent, limit: int) -> list[str]:
    origin = urlsplit(page.source).netloc.lower()
    found: list[str] = []
    for link in page.links:
        url, _ = urldefrag(link.href)
        parts = urlsplit(url)
        if (
            (
                parts.scheme in ("http", "https")
                and parts.netloc.lower() == origin
                and _INTERESTING.search(parts.path)
            )
            and url.rstrip("/") != page.source.rstrip("/")
            and url not in found
        ):
            found.append(url)
    return found[:limit]


def gather_sources(
    urls: list[str],
    documents: list[Path],
    fetcher: SafeFetcher,
    *,
    max_pages: int = 6,
) -> Sources:
    """Fetch ``urls`` (plus same-site pages they link to, up to ``max_pages``) and read ``documents``."""
    if not urls and not documents:
        raise InvalidInput("give at least one website URL or one document to research")
    for url in urls:
        fetcher.check_url(url)  # refused addresses fail before any request
    sources = Sources()
    for path in documents:
        sources.pages.append(load_document(path))
    queue = list(dict.fromkeys(urls))
    seen: set[str] = set()
    while (
        queue
        and len([p for p in sources.pages if p.kind == "html" or p.source.startswith("http")]) < max_pages
    ):
        url = queue.pop(0)
        if url.rstrip("/") in seen:
            continue
        seen.add(url.rstrip("/"))
        try:
            fetched = fetcher.fetch(url)
        except AddressRefused:
            if url in urls:
                raise
            sources.skipped.append((url, "non-public address"))
            continue
        except FetchError as exc:
            if url in urls and not sources.pages and not queue:
                raise
            log.warning("skipped %s: %s", url, exc)
            sources.skipped.append((url, str(exc)))
            continue
        page = parse_document(fetched.body, fetched.kind, fetched.final_url)
        sources.pages.append(page)
        if url in urls:
            queue.extend(u for u in _same_site_links(page, max_pages) if u.rstrip("/") not in seen)
    if not sources.pages:
        raise InvalidInput("no page could be read: " + "; ".join(f"{u}: {r}" for u, r in sources.skipped))
    # the given website's home page first: the heuristic extractor prefers the first page
    sources.pages.sort(key=lambda p: 0 if any(p.source.rstrip("/") == u.rstrip("/") for u in urls) else 1)
    return sources
