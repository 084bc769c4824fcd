"""Publish every publication whose slot has come, exactly once per piece and platform.

Claims up to ``limit`` due rows (a guarded update, so concurrent runs never share one), publishes
them through each platform's configured publisher, and records every outcome: published (with its
link), deferred (rate limit or quota: back to scheduled at the platform's retry time) or failed.
Transient errors are retried with backoff inside the run; after that the row is rescheduled, and
fails for good after ``CONTENTFORGE_PUBLISH_MAX_ATTEMPTS``. A claim is a lease renewed while the
platform call runs; a row left ``publishing`` by a dead worker is resumed with its stored container
id once its lease (``CONTENTFORGE_PUBLISH_STALE_AFTER_S``) expired, and a run whose claim was taken
over reports it as ``lost`` without writing. Deployed on a cron schedule.

    python flows/publish_due.py 20
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from contentforge.publishing import Outcome
from tasks.publishing import claim_due_publications, publish_publication, release_publication
from tasks.run_hooks import note_publish_end


@flow(
    name="publish-due",
    task_runner=ThreadPoolTaskRunner(max_workers=4),
    on_crashed=[note_publish_end],
    on_cancellation=[note_publish_end],
)
def publish_due(limit: int = 20, stale_after_s: float | None = None) -> dict[str, Any]:
    """Publish up to ``limit`` due publications; returns counts and the outcome of each."""
    logger = get_run_logger()
    claimed = claim_due_publications(limit, stale_after_s)
    futures = {(pid, token): publish_publication.submit(pid, token) for pid, token in claimed}
    outcomes: list[Outcome] = []
    for (publication_id, token), future in futures.items():
        future.wait()
        state = future.state
        if state.is_completed():
            outcomes.append(future.result())
            continue
        error = state.message or "publish failed"
        try:
            future.result()
        except Exception as exc:  # recorded on the row and in the artifact
            error = f"{type(exc).__name__}: {exc}"
        outcomes.append(release_publication(publication_id, token, error))
    counts = {
        status: sum(o.status == status for o in outcomes)
        for status in ("published", "deferred", "failed", "lost")
    }
    logger.info("publish_due: %d claimed, %s", len(claimed), counts)
    create_markdown_artifact(key="published", markdown=_report(outcomes), description="publish_due outcome")
    return {
        "claimed": len(claimed),
        **counts,
        "outcomes": [
            {
                "publication_id": o.publication_id,
                "piece_id": o.piece_id,
                "platform": o.platform,
                "status": o.status,
                "url": o.url,
                "error": o.error,
            }
            for o in outcomes
        ],
    }


def _report(outcomes: list[Outcome]) -> str:
    lines = ["# Published", ""]
    published = [o for o in outcomes if o.status == "published"]
    if not outcomes:
        return "# Published\n\nNothing was due."
    lines += ["| platform | piece | post |", "|---|---|---|"]
    lines += [f"| {o.platform} | `{o.piece_id}` | {_link(o)} |" for o in published] or ["| – | – | – |"]
    others = [o for o in outcomes if o.status != "published"]
    if others:
        lines += ["", "## Not published", "", "| platform | piece | status | why |", "|---|---|---|---|"]
        for o in others:
            when = f" (retry at {o.retry_at:%Y-%m-%d %H:%M} UTC)" if o.retry_at else ""
            reason = (o.error or "").replace("|", "/").replace("\n", " ")[:200]
            lines.append(f"| {o.platform} | `{o.piece_id}` | {o.status}{when} | {reason} |")
    return "\n".join(lines)


def _link(outcome: Outcome) -> str:
    if outcome.url and outcome.url.startswith(("http://", "https://")):
        return f"[{outcome.post_id or 'post'}]({outcome.url})"
    return outcome.url or outcome.post_id or "(no public link)"


if __name__ == "__main__":
    publish_due(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
