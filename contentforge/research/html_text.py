"""Reduce a page (HTML, Markdown or plain text) to the parts research reads.

The stdlib ``HTMLParser`` is enough: the title, meta tags, the document language, headings, text
blocks each with the heading it sits under, list items, links, images, button-like links, block
quotes and the CSS (``<style>`` and ``style=""``). Script, style, template and noscript content
never becomes text. Everything here is data about the page; nothing in it is ever an instruction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

_BLOCK_TAGS = {
    "p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "li", "ul", "ol",
    "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "td", "th", "tr", "table", "br", "dd", "dt",
    "figcaption", "address", "form", "label", "button",
}  # fmt: skip
_SKIP_TAGS = {"script", "style", "template", "noscript", "svg"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


def _clean(text: str) -> str:
    return " ".join(text.split())


@dataclass
class Block:
    """A run of text from one block element, with the heading it falls under."""

    tag: str
    text: str
    section: str = ""


@dataclass
class Link:
    href: str
    text: str
    classes: str = ""


@dataclass
class PageContent:
    """What research reads from one document; ``source`` is its URL or ``upload:<name>``."""

    source: str
    kind: str
    title: str = ""
    lang: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    headings: list[tuple[int, str]] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    images: list[dict[str, str]] = field(default_factory=list)
    css: str = ""
    icons: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The readable text, one block per line."""
        return "\n".join(b.text for b in self.blocks if b.text)

    def items_under(self, pattern: str) -> list[str]:
        """List items (``li``) under a heading matching ``pattern`` (a regex, case-insensitive)."""
        rx = re.compile(pattern, re.IGNORECASE)
        return [b.text for b in self.blocks if b.tag == "li" and b.text and rx.search(b.section)]

    def blocks_under(self, pattern: str) -> list[Block]:
        rx = re.compile(pattern, re.IGNORECASE)
        return [b for b in self.blocks if b.text and b.tag not in _HEADINGS and rx.search(b.section)]


class _Parser(HTMLParser):
    def __init__(self, page: PageContent, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self.base = base_url
        self.skip_depth = 0
        self.stack: list[str] = []
        self.buffer: list[str] = []
        self.block_tag = "p"
        self.section = ""
        self.in_title = False
        self.title: list[str] = []
        self.link: Link | None = None
        self.link_text: list[str] = []
        self.css: list[str] = []
        self.in_style = False

    # blocks
    def _flush(self) -> None:
        text = _clean("".join(self.buffer))
        self.buffer = []
        if not text:
            return
        level = _HEADINGS.get(self.block_tag)
        if level:
            self.page.headings.append((level, text))
            self.section = text
        self.page.blocks.append(Block(self.block_tag, text, self.section))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "html" and a.get("lang"):
            self.page.lang = a["lang"].strip()
        if tag == "style":
            self.in_style = True
        if tag in _SKIP_TAGS:
            self.skip_depth += 1
            return
        if style := a.get("style"):
            self.css.append(style)
        if tag == "title":
            self.in_title = True
        elif tag == "meta":
            key = (a.get("name") or a.get("property") or a.get("itemprop") or "").lower()
            if key and a.get("content"):
                self.page.meta.setdefault(key, _clean(a["content"]))
        elif tag == "link" and "icon" in a.get("rel", "").lower() and a.get("href"):
            self.page.icons.append(urljoin(self.base, a["href"]))
        elif tag == "img":
            self.page.images.append(
                {
                    "src": urljoin(self.base, a.get("src", "")),
                    "alt": a.get("alt", ""),
                    "class": a.get("class", "") + " " + a.get("id", ""),
                }
            )
        elif tag == "a" and a.get("href"):
            self.link = Link(urljoin(self.base, a["href"].strip()), "", a.get("class", ""))
            self.link_text = []
        if tag in _BLOCK_TAGS:
            self._flush()
            if tag not in ("br", "ul", "ol", "tr", "table"):
                self.block_tag = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self.in_style = False
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if tag == "title":
            self.in_title = False
        elif tag == "a" and self.link is not None:
            self.link.text = _clean("".join(self.link_text))
            self.page.links.append(self.link)
            self.link = None
        if tag in _BLOCK_TAGS:
            self._flush()
            self.block_tag = "p"

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self.css.append(data)
            return
        if self.skip_depth:
            return
        if self.in_title:
            self.title.append(data)
            return
        self.buffer.append(data)
        if self.link is not None:
            self.link_text.append(data)

    def close(self) -> None:
        super().close()
        self._flush()
        self.page.title = _clean("".join(self.title))
        self.page.css = "\n".join(self.css)


def parse_html(html: str, source: str) -> PageContent:
    page = PageContent(source=source, kind="html")
    parser = _Parser(page, source)
    parser.feed(html)
    parser.close()
    return page


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
_TEXT_HEADING = re.compile(r"^\s*[A-ZÁÉÍÓÚÑ][\w’'&-]*(?: [\w’'&-]+){0,4}\s*$")
_LABEL_LINE = re.compile(r"^\s*\**[A-ZÁÉÍÓÚÑ¿][\w ’'/&-]{0,40}\**\s*:\**\s+\S")
_MD_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)[^)]*\)")


def parse_markdown(text: str, source: str, kind: str = "markdown") -> PageContent:
    """Markdown (or plain text, where only paragraphs and '-' items exist) as ``PageContent``."""
    page = PageContent(source=source, kind=kind)
    section = ""
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            page.blocks.append(Block("p", _clean(" ".join(paragraph)), section))
            paragraph.clear()

    for line in text.splitlines():
        for label, href in _MD_LINK.findall(line):
            page.links.append(Link(urljoin(source, href) if "://" in source else href, _clean(label)))
        plain = _MD_LINK.sub(r"\1", line)
        if kind == "markdown" and (heading := _MD_HEADING.match(plain)):
            flush()
            level, title = len(heading.group(1)), _clean(heading.group(2))
            page.headings.append((level, title))
            section = title
            page.blocks.append(Block(f"h{level}", title, section))
            if level == 1 and not page.title:
                page.title = title
        elif kind == "text" and _TEXT_HEADING.match(plain):
            # plain text and PDFs have no markup: a short line without punctuation ("Products",
            # "Our customers") is the heading of what follows
            flush()
            title = _clean(plain)
            page.headings.append((2, title))
            section = title
            page.blocks.append(Block("h2", title, section))
        elif _LABEL_LINE.match(plain):
            # "Tone: warm" on its own line is a fact of its own, not part of the paragraph around it
            flush()
            page.blocks.append(Block("p", _clean(plain.replace("**", "")), section))
        elif item := _MD_ITEM.match(plain):
            flush()
            page.blocks.append(Block("li", _clean(item.group(1).replace("**", "")), section))
        elif not plain.strip():
            flush()
        else:
            paragraph.append(plain.replace("**", "").replace("__", ""))
    flush()
    return page


def parse_document(body: str, kind: str, source: str) -> PageContent:
    if kind == "html":
        return parse_html(body, source)
    return parse_markdown(body, source, "markdown" if kind == "markdown" else "text")
