"""Analytics tasks: collect due metric snapshots, learn every account, act on new reach-drop alerts.

Collection does not retry as a whole: each platform's rate limit, refusal or outage is reported by
``collect_due`` and the next cron run picks the posts up again. Learning is pure computation on the
database; a crash simply reruns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from contentforge.analytics.collect import collect_due
from contentforge.analytics.factory import build_collectors, snapshot_ages
from contentforge.analytics.learn import AccountLearning, learn_all
from contentforge.analytics.pauses import act_on_pending_alerts
from contentforge.db.analytics import AnalyticsStore
from contentforge.publishing import build_notifier
from tasks import resources


def analytics_store() -> AnalyticsStore:
    return AnalyticsStore(resources.repository().sessions)


@task(cache_policy=NO_CACHE, persist_result=False, timeout_seconds=1800)
def collect_metrics(now: datetime | None = None) -> dict[str, Any]:
    """Snapshot every published post whose next age has passed, on every configured platform."""
    settings = resources.settings()
    collectors, missing = build_collectors(settings)
    storage = resources.storage()
    report = collect_due(
        analytics_store(), collectors, now=now or datetime.now(UTC), ages=snapshot_ages(settings),
        image_for=storage.get,
    )  # fmt: skip
    return {
        "due": report.due,
        "snapshots": report.snapshots,
        "account_days": report.account_days,
        "missing_posts": report.missing,
        "errors": report.errors,
        "retry_at": {p: t.isoformat() for p, t in report.retry_at.items()},
        "not_configured": {p: missing[p] for p in report.skipped_platforms if p in missing},
    }


@task(cache_policy=NO_CACHE, persist_result=False, timeout_seconds=1800)
def learn_accounts(now: datetime | None = None) -> list[AccountLearning]:
    """Learn every account (persona time zones from the personas), save weights, record alerts."""
    repo = resources.repository()

    def timezone_for(account: str) -> str | None:
        persona = repo.get_persona(account)
        return persona.timezone if persona is not None else None

    return learn_all(analytics_store(), now=now or datetime.now(UTC), timezone_for=timezone_for)


@task(cache_policy=NO_CACHE, persist_result=False)
def act_on_new_alerts(now: datetime | None = None) -> list[str]:
    """Send every pending reach-drop alert through the signed notify webhook; pause where configured.

    Pending is read from the database (not yet notified, real, recent), not taken from this run's
    learning, so a run that crashed after recording an alert, or whose webhook call failed, loses
    nothing: the next run sends it, and pauses at most once per alert.
    """
    settings = resources.settings()
    return act_on_pending_alerts(
        analytics_store(),
        notifier=build_notifier(settings),
        pause_hours=settings.analytics_pause_hours,
        now=now or datetime.now(UTC),
    )
