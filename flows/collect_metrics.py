"""Collect metric snapshots of published posts from each platform's insights API.

Every published post is snapshotted at the ages in ``CONTENTFORGE_ANALYTICS_SNAPSHOT_AGES``
(1 h, 6 h, 24 h, 72 h, 7 d by default), once per age. Platforms without a token are named with the
setting to add; a rate limit or a missing insights permission stops that platform for this run and
is reported (a markdown artifact), the others go on. Deployed on a cron schedule (``collect-metrics``).

    python flows/collect_metrics.py
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks.analytics import collect_metrics as collect_metrics_task


@flow(name="collect-metrics")
def collect_metrics() -> dict[str, Any]:
    """Snapshot every post whose next age has passed; counts, errors and unconfigured platforms.

    Writes one markdown artifact (``metrics-collected``) so a rate limit or a missing permission is
    visible in the UI; the next cron run picks the remaining posts up again.
    """
    logger = get_run_logger()
    result = collect_metrics_task()
    logger.info("collect-metrics: %d due, %d snapshots stored", result["due"], result["snapshots"])
    lines = [
        "# Metrics collected",
        "",
        f"{result['snapshots']} snapshots stored of {result['due']} due posts; "
        f"{result['account_days']} new account days (followers, reach).",
    ]
    for platform, error in result["errors"].items():
        lines.append(f"- **{platform}**: {error}")
    for platform, retry in result["retry_at"].items():
        lines.append(f"- {platform} rate-limited: retry after {retry}")
    for platform, how in result["not_configured"].items():
        lines.append(f"- {platform} not collected: {how}")
    if result["missing_posts"]:
        lines.append(
            f"- no metrics (deleted, or too new for insights): {', '.join(result['missing_posts'][:20])}"
        )
    create_markdown_artifact(
        key="metrics-collected", markdown="\n".join(lines), description="collect-metrics"
    )
    return result


if __name__ == "__main__":
    collect_metrics()
