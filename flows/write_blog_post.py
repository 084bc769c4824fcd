"""Write a 4-10 page Markdown blog post from an approved topic (offline: a brief) and wait for approval.

The draft (model via prompt ``blog_post.v1``) or, with no model, a BRIEF for a writer or a model (a
full draft needs a model; the form says so) is checked by the quality gate and saved with status
``proposed`` and shown in full as an artifact and in the pause form's description; the flow pauses
with ``pause_flow_run(wait_for_input=BlogApproval)``. The supervisor approves or rejects it and may
paste an edited Markdown (it must still be 4-10 pages). On timeout the draft is approved only if
CONTENTFORGE_APPROVE_ON_TIMEOUT is true.

    python flows/write_blog_post.py TOPIC_ID [PAGES]
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.input import RunInput
from pydantic import Field, ValidationError

from contentforge.domain.strategy import BlogPost, BlogPostDraft
from flows.approval import gate_markdown, wait_for_decision
from tasks import resources
from tasks.run_hooks import note_step_end
from tasks.strategy import set_post_status, write_post_draft


class BlogApproval(RunInput):
    approve: bool = Field(description="Approve the draft (false rejects it).")
    reviewer: str = Field(default="", description="Who decided.")
    markdown: str | None = Field(
        default=None,
        description="An edited version to save instead (4-10 pages); for a brief, the post written from it.",
    )


@flow(name="write-blog-post", on_cancellation=[note_step_end], on_crashed=[note_step_end])
def write_blog_post(
    topic_id: str,
    target_pages: int = 5,
    seed: int = 0,
    timeout_s: int | None = None,
    poll_interval_s: int = 10,
) -> dict[str, Any]:
    """Draft the post for ``topic_id``, wait for approval, record the decision."""
    logger = get_run_logger()
    settings = resources.settings()
    post = BlogPost.model_validate(write_post_draft(topic_id, target_pages, seed))
    kind = str(post.source.get("kind", "draft"))
    header = (
        f"**{post.title}** · {post.word_count} words · {post.pages} A4 pages · {post.source.get('provider')}"
        f" · {gate_markdown(post.source.get('quality_gate'))}"
    )
    if kind == "brief":
        header = f"**{post.source.get('note')}**\n\n{header}"
    create_markdown_artifact(
        f"{header}\n\n---\n\n{post.markdown}",
        key=f"blog-{post.id[:50]}",
        description="Brief (a full draft needs a model)" if kind == "brief" else "Draft",
    )
    logger.info("post %s drafted: %d words (%.1f pages)", post.id, post.word_count, post.pages)
    answer = wait_for_decision(
        BlogApproval.with_initial_data(description=f"{header}\n\n{post.markdown}", approve=True),
        key=f"blog-{post.id}",
        timeout_s=timeout_s,
        poll_interval_s=poll_interval_s,
    )
    if answer is None:
        status = "approved" if settings.approve_on_timeout else "proposed"
        if settings.approve_on_timeout:
            set_post_status(post.id, "approved", None, None)
        logger.warning("post %s: no decision in time; status %s", post.id, status)
        return {
            "post_id": post.id,
            "status": status,
            "words": post.word_count,
            "pages": post.pages,
            "timed_out": True,
            "kind": kind,
            "note": post.source.get("note"),
            "quality_gate": post.source.get("quality_gate"),
        }
    markdown, error = None, None
    if answer.markdown and answer.markdown.strip() != post.markdown.strip():
        try:
            markdown = BlogPostDraft(title=post.title, markdown=answer.markdown).markdown
        except ValidationError as exc:
            error = f"edited markdown not saved: {exc.errors()[0]['msg']}"
            logger.warning("post %s: %s", post.id, error)
    status = "approved" if answer.approve else "rejected"
    set_post_status(post.id, status, answer.reviewer or None, markdown)
    logger.info("post %s %s%s", post.id, status, f" by {answer.reviewer}" if answer.reviewer else "")
    return {
        "post_id": post.id, "status": status, "words": post.word_count, "pages": post.pages,
        "timed_out": False, "edited": markdown is not None, "error": error, "kind": kind,
        "note": post.source.get("note"), "quality_gate": post.source.get("quality_gate"),
    }  # fmt: skip


if __name__ == "__main__":
    print(write_blog_post(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5))
