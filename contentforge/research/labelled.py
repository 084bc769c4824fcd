"""Facts a brand states with a label: "Competitors: ...", "Tone: ...", "Colours: ... #2F4F2F", "Who we serve".

Brand briefs, press kits and about pages state their most useful facts as labelled lines or short
sections. Read as labels they are exact; read by keyword statistics they come out wrong (a stated
tone replaced by an inferred one, a hex colour taken for a hashtag). This module reads them first,
with the labelled line as evidence, so the heuristic extractor's inferred rules only fill what the
page does not say. English and Spanish labels are known.

It also holds ``is_hex_colour``, which tells a colour code from a hashtag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from contentforge.quality.facts import PRICE_RE
from contentforge.research.html_text import PageContent

HEX_COLOUR_RE = re.compile(r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")
SOCIAL_HOSTS = {
    "instagram": "instagram.com", "tiktok": "tiktok.com", "x": "x.com", "twitter": "twitter.com",
    "facebook": "facebook.com", "linkedin": "linkedin.com", "youtube": "youtube.com",
    "pinterest": "pinterest.com", "threads": "threads.net",
}  # fmt: skip
_SOCIAL_URL_RE = re.compile(
    r"(?:https?://)?(?:www\.)?(instagram\.com|tiktok\.com|x\.com|twitter\.com|facebook\.com|"
    r"linkedin\.com|youtube\.com|pinterest\.com|threads\.net|threads\.com)/[\w.@%/-]*[\w@]",
    re.IGNORECASE,
)
_YEAR_RE = re.compile(r"\b((?:18|19|20)\d{2})\b")
_WWW_RE = re.compile(r"\bwww\.[a-z0-9-]+(?:\.[a-z0-9-]+)+\b", re.IGNORECASE)
_EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_PHONE_RE = re.compile(r"\+?\(?\d[\d\s().-]{6,18}\d")

# field -> label patterns (anchored at the start of a line or block, followed by ":" or a dash)
LABELS: dict[str, str] = {
    "competitors": r"(?:main )?competitors|competition|we compete with|competidores|competencia",
    "tone_of_voice": r"tone(?: of voice)?|brand voice|voice|tono(?: de voz)?|voz de marca",
    "brand_colors": r"(?:brand )?colou?rs?|(?:colou?r )?palette|colores(?: de marca)?|paleta",
    "founded_year": r"founded|established|year founded|fundad[ao]|año de fundación",
    "headquarters": r"headquarters|hq|based in|location|sede|ubicación",
    "audience_segments": r"who we serve|our customers|(?:target )?audience|customers|"
    r"a quién servimos|nuestros clientes|público(?: objetivo)?",
    "mission": r"(?:our )?mission|(?:nuestra )?misión",
    "vision": r"(?:our )?vision|(?:nuestra )?visión",
    "values": r"(?:our )?values|(?:nuestros )?valores",
    "tagline": r"tagline|slogan|eslogan",
    "industry": r"industry|category|sector|industria|categoría",
    "contact_email": r"e-?mail|correo(?: electrónico)?",
    "contact_phone": r"phone|telephone|tel|call us|teléfono",
    "website": r"website|web ?site|sitio web|web",
    "hashtags": r"hashtags?",
    "typography": r"fonts?|typography|typefaces?|tipografía",
}
LIST_FIELDS = {"competitors", "audience_segments", "values", "typography"}
BARE_LABEL_SKIPS = LIST_FIELDS | {"hashtags"}
"""A heading alone ("Our values") over list items introduces a list the section readers take whole;
over one paragraph or a ``<dd>`` ("Competitors" / "Orangetheory, Gold's Gym") that line is the list."""
_LABEL_RES = {
    name: re.compile(rf"^\s*(?:{pattern})\s*(?::|—|–|-(?=\s))\s*(?P<value>.*)$", re.IGNORECASE)
    for name, pattern in LABELS.items()
}
_BARE_LABEL_RES = {name: re.compile(rf"^\s*(?:{p})\s*:?\s*$", re.IGNORECASE) for name, p in LABELS.items()}
_SOCIAL_LABEL_RE = re.compile(
    r"^\s*(instagram|tiktok|x|twitter|facebook|linkedin|youtube|pinterest|threads)\s*:\s*(?P<value>\S+)",
    re.IGNORECASE,
)
# sections whose items or paragraph name the audience
AUDIENCE_HEADINGS = (
    r"\bwho (?:we serve|it'?s for|we'?re for|this is for)\b|\bfor whom\b|\bour (?:customers|community)\b|"
    r"\baudience\b|a quién servimos|nuestros clientes|para quién"
)
PRODUCT_HEADINGS = (
    r"\bproducts?\b|\bshop\b|\bcollection\b|\brange\b|\bbestsellers?\b|price list|productos|\bmenu\b"
)


@dataclass(frozen=True)
class Fact:
    """One labelled fact: its value, the page it came from and the line that states it."""

    value: object
    source: str
    evidence: str


def is_hex_colour(token: str) -> bool:
    """``#2F4F2F``, ``E8D9B5`` or ``#abc`` with a digit: a colour code, never a hashtag."""
    body = token.lstrip("#")
    if re.fullmatch(r"[0-9a-fA-F]{6}|[0-9a-fA-F]{8}", body):
        return True
    return bool(re.fullmatch(r"[0-9a-fA-F]{3}", body)) and any(c.isdigit() for c in body)


def _split_list(value: str, max_words: int = 8) -> list[str]:
    value = value.strip().rstrip(".")
    parts = re.split(r"\s*[,;•·|/]\s*|\s+(?:and|y|e|&)\s+", value)
    out: list[str] = []
    for part in parts:
        part = part.strip(" .-—–\"'“”")
        if part and len(part.split()) <= max_words and part.lower() not in {p.lower() for p in out}:
            out.append(part)
    return out


def _audience_parts(text: str) -> list[str]:
    """Audience segments from a sentence: "Early risers, weekend hikers and home baristas who ..."."""
    text = re.sub(
        r"^(?:we serve|we make (?:coffee|it|them) for|for|servimos a|para)\s+", "", text.strip(), flags=re.I
    )
    first = re.split(r"(?<=[.!?])\s", text)[0]
    segments: list[str] = []
    for part in _split_list(first, max_words=30):
        part = re.split(r"\s+(?:who|that|which|whose|que|quienes)\b", part, maxsplit=1)[0].strip()
        if 1 <= len(part.split()) <= 6 and part.lower() not in {s.lower() for s in segments}:
            segments.append(part[:1].lower() + part[1:] if not part[:2].isupper() else part)
    return segments[:8]


def _lines(page: PageContent) -> Iterable[tuple[str, str, str]]:
    """(text, next block's text, its tag) for every block: a bare label's value is the next block."""
    blocks = [b for b in page.blocks if b.text]
    for i, block in enumerate(blocks):
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        yield block.text, following.text if following else "", following.tag if following else ""


def _clean_value(field: str, value: str, full_line: str) -> object | None:
    value = value.strip().strip("\"'“”")
    if not value:
        return None
    if field == "brand_colors":
        colours = [c.lower() for c in HEX_COLOUR_RE.findall(full_line)]
        colours = [("#" + "".join(ch * 2 for ch in c[1:])) if len(c) == 4 else c for c in colours]
        return list(dict.fromkeys(colours)) or None
    if field == "founded_year":
        year = _YEAR_RE.search(value)
        return int(year.group(1)) if year else None
    if field == "contact_email":
        email = _EMAIL_RE.search(value)
        return email.group(0) if email else None
    if field == "contact_phone":
        phone = _PHONE_RE.search(value)
        return phone.group(0).strip() if phone else None
    if field == "hashtags":
        tags = [t for t in re.findall(r"#?([A-Za-z][\w]{1,40})", value) if not is_hex_colour(t)]
        return list(dict.fromkeys(tags)) or None
    if field == "website":
        url = re.search(r"(?:https?://)?(?:www\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)+(?:/\S*)?", value, re.I)
        if not url:
            return None
        found = url.group(0).rstrip(".,;")
        return found if found.startswith("http") else f"https://{found}"
    if field == "audience_segments":
        return _audience_parts(value) or None
    if field in LIST_FIELDS:
        return _split_list(value) or None
    if field == "tone_of_voice":
        return value.rstrip(".")[:200] or None
    sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z¿¡])", value)[0].rstrip(".")
    return sentence[:1].upper() + sentence[1:] if len(sentence) >= 2 else None


def labelled_facts(pages: list[PageContent]) -> dict[str, Fact]:
    """Every labelled fact found, first page first; each field's first statement wins."""
    facts: dict[str, Fact] = {}

    def keep(field: str, value: object | None, source: str, evidence: str) -> None:
        if value not in (None, "", []) and field not in facts:
            facts[field] = Fact(value, source, evidence[:300])

    for page in pages:
        for text, following, following_tag in _lines(page):
            for field, rx in _LABEL_RES.items():
                if match := rx.match(text):
                    keep(field, _clean_value(field, match.group("value"), text), page.source, text)
                elif (
                    (field not in BARE_LABEL_SKIPS or following_tag in ("dd", "p"))
                    and _BARE_LABEL_RES[field].match(text)
                    and following
                    and len(following) <= 300
                ):
                    keep(field, _clean_value(field, following, following), page.source, f"{text} {following}")
        keep("social_links", social_links(page), page.source, "; ".join(social_links(page)))
        keep("audience_segments", _audience_section(page), page.source, _audience_evidence(page))
        keep("products", priced_products(page), page.source, "; ".join(priced_products(page))[:300])
        written = next(
            (w for w in _WWW_RE.finditer(page.text) if not _SOCIAL_URL_RE.match(w.group(0) + "/x")), None
        )
        if written:
            keep("website", f"https://{written.group(0).rstrip('.,;')}", page.source, written.group(0))
    return facts


def social_links(page: PageContent) -> list[str]:
    """Social profile URLs: links, URLs written out in the text, and "Instagram: @handle" lines."""
    found: list[str] = []
    for link in page.links:
        if _SOCIAL_URL_RE.fullmatch(link.href.split("?")[0].rstrip("/")) or any(
            urlsplit(link.href).netloc.lower().removeprefix("www.") == host
            for host in (*SOCIAL_HOSTS.values(), "threads.com")
        ):
            found.append(link.href.split("?")[0].rstrip("/"))
    for block in page.blocks:
        for match in _SOCIAL_URL_RE.finditer(block.text):
            url = match.group(0).rstrip("/.")
            found.append(url if url.lower().startswith("http") else f"https://{url}")
        if (label := _SOCIAL_LABEL_RE.match(block.text)) and label.group("value").startswith("@"):
            host = SOCIAL_HOSTS[label.group(1).lower()]
            found.append(f"https://{host}/{label.group('value')[1:].rstrip('.,;')}")
    out: list[str] = []
    for url in found:
        key = re.sub(r"^https?://(www\.)?", "", url.lower())
        if key not in {re.sub(r"^https?://(www\.)?", "", u.lower()) for u in out}:
            out.append(url)
    return out[:10]


def _audience_blocks(page: PageContent) -> list[str]:
    return [b.text for b in page.blocks_under(AUDIENCE_HEADINGS)]


def _audience_section(page: PageContent) -> list[str] | None:
    items = page.items_under(AUDIENCE_HEADINGS)
    if items:
        return list(dict.fromkeys(p for item in items for p in _audience_parts(item)[:1]))[:8] or None
    blocks = _audience_blocks(page)
    return _audience_parts(blocks[0]) if blocks else None


def _audience_evidence(page: PageContent) -> str:
    return "; ".join(page.items_under(AUDIENCE_HEADINGS)) or " ".join(_audience_blocks(page)[:1])


def priced_products(page: PageContent) -> list[str]:
    """Product lines that state a price: list items, lines under a products/shop/price-list heading,
    or lines right after a bare "Products" line (PDFs and plain text have no headings)."""
    lines: list[str] = []
    after_heading = False
    for block in page.blocks:
        text = block.text
        if re.fullmatch(rf"\W*(?:{PRODUCT_HEADINGS}|journeys|memberships|pricing)\W*", text, re.IGNORECASE):
            after_heading = True
            continue
        priced = bool(PRICE_RE.search(text)) and len(text) <= 240
        if (
            priced
            and not re.match(r"^\s*(?:free shipping|shipping|envío)", text, re.IGNORECASE)
            and (
                block.tag == "li"
                or after_heading
                or re.search(PRODUCT_HEADINGS, block.section, re.IGNORECASE)
            )
        ):
            lines.append(text)
            continue
        after_heading = after_heading and priced
    return list(dict.fromkeys(lines))[:12]


# The price level a category's shoppers read as budget or premium (typical item, USD/EUR): a $14 bag
# of specialty coffee is mid-range, a $14 T-shirt is budget. The tier is the median stated price
# against these bands, so the same number means different things in different categories.
PRICE_BANDS: dict[str, tuple[float, float]] = {
    "food": (8, 40), "beauty": (15, 60), "wellness": (15, 60), "fashion": (30, 150),
    "fitness": (25, 120), "outdoors": (30, 200), "tech": (50, 400), "travel": (100, 1000),
    "business": (50, 500), "lifestyle": (20, 100),
}  # fmt: skip
DEFAULT_BAND = (25.0, 120.0)


def price_tier(prices: list[float], industry: str | None) -> tuple[str, str]:
    """``(tier, evidence)`` from stated prices relative to the category's price band."""
    ordered = sorted(prices)
    median = ordered[len(ordered) // 2]
    low, high = PRICE_BANDS.get(industry or "", DEFAULT_BAND)
    tier = "budget" if median < low else "mid-range" if median < high else "premium"
    category = industry if industry in PRICE_BANDS else "any category"
    return tier, (
        f"median of {len(ordered)} stated prices {median:g} (range {ordered[0]:g}-{ordered[-1]:g}); "
        f"{category}: budget below {low:g}, premium from {high:g}"
    )
