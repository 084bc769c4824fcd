"""Schedule a batch's publishable pieces into each persona's posting slots.

Only ``ready`` pieces whose moderation verdict the platform accepts get a slot; every other piece
is refused with its reason and counted. Slots come from ``CONTENTFORGE_PUBLISH_SLOTS`` (daily times
in the persona's timezone) and ``CONTENTFORGE_PUBLISH_DAILY_LIMIT``; slots already taken are
skipped, and rerunning schedules nothing twice. A markdown artifact lists the result.

    python flows/schedule_batch.py BATCH_ID instagram,x
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks.publishing import schedule_batch_publications
from tasks.run_hooks import note_step_end


@flow(name="schedule-batch", on_cancellation=[note_step_end], on_crashed=[note_step_end])
def schedule_batch(
    batch_id: str, platforms: list[str] | None = None, start: datetime | None = None
) -> dict[str, Any]:
    """Schedule ``batch_id`` on ``platforms`` (default: instagram) from ``start`` (default: now)."""
    logger = get_run_logger()
    platforms = platforms or ["instagram"]
    result = schedule_batch_publications(batch_id, platforms, start)
    logger.info(
        "batch %s: %d scheduled, %d already scheduled, %d refused",
        batch_id, result["scheduled"], result["already_scheduled"], result["refused"],
    )  # fmt: skip
    lines = [
        f"# Publishing schedule for batch `{batch_id}`",
        "",
        f"{result['scheduled']} scheduled, {result['already_scheduled']} already scheduled, "
        f"{result['refused']} refused.",
        "",
        "| platform | piece | when (UTC) |",
        "|---|---|---|",
    ]
    for platform, slots in result["slots"].items():
        lines += [f"| {platform} | `{piece}` | {when} |" for piece, when in slots]
    if result.get("covers"):
        lines += ["", "## Covers", ""] + [f"- {note}" for note in result["covers"][:50]]
    if result["refusals"]:
        lines += ["", "## Refused", ""] + [f"- {reason}" for reason in result["refusals"][:50]]
    create_markdown_artifact(
        key="publishing-schedule", markdown="\n".join(lines), description=f"schedule of batch {batch_id}"
    )
    return result


if __name__ == "__main__":
    schedule_batch(sys.argv[1], sys.argv[2].split(",") if len(sys.argv) > 2 else None)
