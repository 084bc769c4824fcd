"""AI disclosure per platform: the API flag to send with a post and an optional caption label.

Platforms that let an API caller declare AI-generated content (checked against their docs):

* Instagram Content Publishing API: ``is_ai_generated=true`` on ``POST /{ig-user-id}/media`` (applies
  the "AI info" label; on carousels, set on the carousel container only).
* TikTok Content Posting API: ``post_info.is_aigc=true`` on the post init request.
* YouTube Data API (not a ContentForge platform yet): ``status.containsSyntheticMedia=true``.

X, Threads and LinkedIn offer no such API field; for them the caption label is the disclosure
(besides the IPTC ``trainedAlgorithmicMedia`` XMP that every image file carries, which Meta and
LinkedIn read). Modes per platform (``CONTENTFORGE_AI_DISCLOSURE``, JSON): ``flag`` (API field only,
falling back to the label where a platform has no field), ``label``, ``both`` (default) and ``off``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from contentforge.errors import InvalidInput

if TYPE_CHECKING:
    from contentforge.config import Settings

Mode = Literal["flag", "label", "both", "off"]
MODES: tuple[str, ...] = ("flag", "label", "both", "off")
DEFAULT_MODE: Mode = "both"

PLATFORM_FLAGS: Mapping[str, Mapping[str, Any]] = {
    "instagram": {"is_ai_generated": True},
    "tiktok": {"post_info.is_aigc": True},
    "youtube": {"status.containsSyntheticMedia": True},
    "x": {},
    "threads": {},
    "linkedin": {},
}
"""The request field each platform's API documents for AI-generated content (dotted = nested)."""


@dataclass(frozen=True)
class Disclosure:
    """What the publisher adds: ``flags`` merged into the API request, ``caption_suffix`` appended."""

    flags: dict[str, Any] = field(default_factory=dict)
    caption_suffix: str = ""

    def apply_caption(self, caption: str) -> str:
        """``caption`` with the label appended once (idempotent)."""
        label = self.caption_suffix.strip()
        if not label or label.lower() in caption.lower():
            return caption
        return f"{caption.rstrip()} {label}".strip()


def disclosure_for(platform: str, settings: Settings) -> Disclosure:
    """The disclosure for ``platform`` under the configured mode; unknown names raise ``InvalidInput``."""
    name = str(platform).lower()
    if name not in PLATFORM_FLAGS:
        raise InvalidInput(
            f"no AI disclosure rules for platform {platform!r}; known: {', '.join(PLATFORM_FLAGS)}"
        )
    modes = settings.ai_disclosure or {}
    unknown = sorted(set(modes) - set(PLATFORM_FLAGS))
    if unknown:
        raise InvalidInput(f"CONTENTFORGE_AI_DISCLOSURE names unknown platforms {unknown}")
    mode = modes.get(name, DEFAULT_MODE)
    if mode not in MODES:
        raise InvalidInput(
            f"CONTENTFORGE_AI_DISCLOSURE[{name!r}] must be one of {', '.join(MODES)}, got {mode!r}"
        )
    if mode == "off":
        return Disclosure()
    flags = dict(PLATFORM_FLAGS[name]) if mode in ("flag", "both") else {}
    # A platform without an API field would otherwise disclose nothing in "flag" mode.
    wants_label = mode in ("label", "both") or (mode == "flag" and not flags)
    return Disclosure(flags=flags, caption_suffix=settings.ai_disclosure_label if wants_label else "")
