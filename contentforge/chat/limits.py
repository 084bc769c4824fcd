"""How long a direct message may be on each channel, and fitting a reply into it.

Instagram's Send API takes text up to 1000 characters; X direct messages up to 10000; ContentForge's
own API keeps replies chat-sized (2000). The disclosure is part of the text, so it counts too.
"""

from __future__ import annotations

MESSAGE_LIMITS: dict[str, int] = {"instagram": 1000, "x": 10000, "api": 2000}
ELLIPSIS = "…"


def message_limit(platform: str) -> int:
    return MESSAGE_LIMITS[platform]


def fit(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters (with an ellipsis if cut)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + ELLIPSIS


def with_disclosure(disclosure: str, reply: str, limit: int) -> str:
    """The disclosure, then the reply cut to what room is left: the disclosure is never the part cut."""
    room = limit - len(disclosure) - 1
    return f"{disclosure} {fit(reply, room)}" if room > 0 else fit(disclosure, limit)
