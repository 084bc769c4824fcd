"""What a post was made of, as the features learning compares: one place builds them for every source."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import regex

HASHTAG = regex.compile(r"#(\w+)")


def hashtags_in(caption: str) -> list[str]:
    """The caption's hashtags, lower-cased, in order, each once."""
    return list(dict.fromkeys(tag.lower() for tag in HASHTAG.findall(caption)))


@lru_cache(maxsize=1)
def _categories() -> dict[str, str]:
    from contentforge.catalog import load_templates

    return {t.id: t.category for t in load_templates()}


def template_category(template_id: str | None) -> str | None:
    """The library's category of a template id (None for an id the library does not know)."""
    return _categories().get(template_id or "")


def post_features(
    caption: str,
    *,
    template_id: str | None = None,
    tier: str | None = None,
    hook_style: str | None = None,
    call_to_action: str | None = None,
) -> dict[str, Any]:
    """Features of a post; keys with no value are left out rather than stored as null."""
    features: dict[str, Any] = {
        "hashtags": hashtags_in(caption),
        "caption_length": len(caption),
        "template_id": template_id,
        "template_category": template_category(template_id),
        "tier": tier,
        "hook_style": hook_style,
        "call_to_action": call_to_action,
    }
    return {k: v for k, v in features.items() if v is not None}
