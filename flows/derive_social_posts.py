"""Derive one social post per platform from an approved blog post, within each platform's rules.

Captions come from a model (prompt ``social_posts.v1``) or the offline rules and are then fitted to
``contentforge/text/platform_rules.yaml`` (length, first line, emoji, hashtags; X counted by
weight) and checked by the quality gate (engagement bait rewritten out, prices only from the post or
brief); a caption that cannot be fitted or fails the gate is replaced by the offline one. From an
offline brief the captions carry the brief's own facts and call to action. Saved in ``social_posts``
and shown as an artifact.

    python flows/derive_social_posts.py POST_ID [instagram x ...]
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from contentforge.domain.strategy import SocialPost
from flows.approval import gate_markdown
from tasks.run_hooks import note_step_end
from tasks.strategy import derive_posts


@flow(name="derive-social-posts", on_cancellation=[note_step_end], on_crashed=[note_step_end])
def derive_social_posts(post_id: str, platforms: list[str] | None = None) -> dict[str, Any]:
    """Captions for ``platforms`` (default: the persona's platforms) from blog post ``post_id``."""
    logger = get_run_logger()
    posts = [SocialPost.model_validate(p) for p in derive_posts(post_id, list(platforms or []))]
    lines = [f"# Social posts from `{post_id}`", ""]
    for p in posts:
        gate = gate_markdown(p.source.get("quality_gate"))
        lines += [
            f"## {p.platform.value} ({p.source.get('provider')})",
            "",
            gate,
            "",
            "```",
            p.caption,
            "```",
        ]
        lines.append("")
    create_markdown_artifact("\n".join(lines), key=f"social-{post_id[:50]}", description="Social posts")
    logger.info(
        "post %s: %d social posts (%s)", post_id, len(posts), ", ".join(p.platform.value for p in posts)
    )
    return {
        "post_id": post_id,
        "posts": {p.platform.value: p.caption for p in posts},
        "quality_gate": {p.platform.value: p.source.get("quality_gate") for p in posts},
    }


if __name__ == "__main__":
    print(derive_social_posts(sys.argv[1], sys.argv[2:] or None))
