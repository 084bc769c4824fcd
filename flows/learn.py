"""Learn from every account's metrics: posting times, rankings, engagement model, reach drops.

For each account in the analytics tables: normalized engagement, expected lift by hour of week
(empirical Bayes), lifts of hashtags, hook styles, calls to action, template categories and tiers,
a gradient-boosting engagement model (used only when it beats the median), and reach-drop
detection (STL + MAD). The learned weights feed the next batches; each new drop is sent through the
signed notify webhook and, with ``CONTENTFORGE_ANALYTICS_PAUSE_HOURS`` > 0, pauses that persona's
publishing on that platform. One markdown artifact per account, with plots. Deployed on a cron
schedule (``learn``).

    python flows/learn.py
"""

from __future__ import annotations

import re
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from contentforge.analytics.report import markdown
from tasks.analytics import act_on_new_alerts, learn_accounts


def _artifact_key(account: str, platform: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", f"analytics-{account}-{platform}".lower()).strip("-")[:100]


@flow(name="learn")
def learn() -> dict[str, Any]:
    """Learn every account, then act on every reach-drop alert not yet notified; what was learned.

    The alerts are acted on from the database, not from this run's learning, so one recorded by a
    run that crashed or whose webhook failed is sent (and pauses its persona, once) by this run.
    One markdown artifact per account.
    """
    logger = get_run_logger()
    learnings = learn_accounts()
    actions = act_on_new_alerts()  # every pending alert, also those an earlier run failed to send
    for learning in learnings:
        create_markdown_artifact(
            key=_artifact_key(learning.account, learning.platform),
            markdown=markdown(learning),
            description=f"what {learning.account} on {learning.platform} taught"
            + (" (simulated data)" if learning.simulated else ""),
        )
    for action in actions:
        logger.info("learn: %s", action)
    return {
        "accounts": [
            {
                "account": learning.account,
                "platform": learning.platform,
                "simulated": learning.simulated,
                "posts": len(learning.frame),
                "best_hour": learning.timing.best_hour,
                "timing": learning.timing.reason,
                "drops": [d.starts_on.isoformat() for d in learning.drops.drops],
                "model": learning.model.evaluation.reason if learning.model is not None else None,
            }
            for learning in learnings
        ],
        "alerts": actions,
    }


if __name__ == "__main__":
    learn()
