"""Prices and product lines as a brand states them, read apart: shared by research and the quality gate.

``split_product`` reads "The Basecamp Kit: a titanium cone, a mug and two bags, $79." into the name
(what a title or a tag may use), the details and the prices (what a brief lists as product facts,
and what the quality gate checks every price in a text against).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PRICE_RE = re.compile(
    r"(?:(?:[$€£]|\b(?:EUR|USD|GBP)\s)\s?(\d{1,3}(?:,\d{3})+|\d{1,5}(?:[.,]\d{2})?)"
    r"|(\d{1,5}(?:[.,]\d{2})?)\s?(?:€|\b(?:EUR|USD|GBP|euros?)\b))",
    re.IGNORECASE,
)


def price_of(text: str) -> list[float]:
    """Every stated price in ``text`` ("$3,400" is 3400; "5,50 €" is 5.5)."""
    prices = []
    for a, b in PRICE_RE.findall(text):
        raw = a or b
        if re.fullmatch(r"\d{1,3}(?:,\d{3})+", raw):
            raw = raw.replace(",", "")
        prices.append(float(raw.replace(",", ".")))
    return prices


@dataclass(frozen=True)
class Product:
    """A product line read apart: ``name`` alone is what titles and tags may use."""

    name: str
    details: str
    prices: tuple[float, ...]


def split_product(item: str) -> Product:
    """``"The Basecamp Kit: a titanium cone, a mug and two bags, $79."`` -> name, details, prices.

    The name ends at the first ":", " - ", " — ", " – ", "(" or ",": what follows is description
    and price, which belong in a brief's product facts, never pasted into a title or a hashtag.
    """
    text = " ".join(item.split()).strip(" .")
    prices = tuple(price_of(text))
    parts = re.split(r"\s*(?::|\s[-—–]\s|\(|,|\s[|·]\s)\s*", text, maxsplit=1)
    name = PRICE_RE.sub("", parts[0]).strip(" .-—–$€£")
    details = parts[1].strip(" .)") if len(parts) > 1 else ""
    if not name:
        name = text[:60]
    return Product(name=name, details=details, prices=prices)
