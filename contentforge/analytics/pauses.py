"""Publishing pauses after a reach drop: hold a persona's posts on a platform until the pause ends.

A pause is recorded with its reason (``db.analytics.AnalyticsStore.pause``); a claimed publication
of a paused persona and platform goes back to ``scheduled`` at the pause's end instead of being
posted, so publishing resumes by itself when the pause runs out, or at once after
``contentforge analytics resume``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from contentforge.db.analytics import Alert, AnalyticsStore, Pause
from contentforge.publishing.ledger import ClaimLost, PublicationLedger
from contentforge.publishing.protocol import Publication, PublishError
from contentforge.publishing.runner import Outcome, lost
from contentforge.publishing.webhook import WebhookNotifier


def defer_if_paused(
    ledger: PublicationLedger, store: AnalyticsStore, publication: Publication, *, now: datetime
) -> Outcome | None:
    """``deferred`` (rescheduled to the pause's end) when a pause holds the row; else None."""
    pause = store.active_pause(publication.persona_id, publication.platform, now)
    if pause is None:
        return None
    message = f"paused until {pause.paused_until.isoformat()}: {pause.reason}"
    try:
        ledger.reschedule(publication.id, publication.claim_token, pause.paused_until, message)
    except ClaimLost as exc:
        return lost(publication, exc)
    return Outcome(publication.id, publication.piece_id, publication.platform, "deferred", error=message)


def pause_for_alert(store: AnalyticsStore, alert: Alert, *, hours: float, now: datetime) -> Pause | None:
    """Pause the alert's account (a persona id) on its platform for ``hours``; none for 0 hours."""
    if hours <= 0 or alert.simulated:
        return None
    depth = alert.detail.get("depth")
    reason = (
        f"reach drop since {alert.starts_on.isoformat()} (reach at {depth:.0%} of baseline, alert {alert.id})"
        if isinstance(depth, float)
        else f"reach drop since {alert.starts_on.isoformat()} (alert {alert.id})"
    )
    return store.pause(
        alert.account,
        alert.platform,
        until=now + timedelta(hours=hours),
        reason=reason,
        now=now,
        alert_id=alert.id,
    )


def act_on_alerts(
    store: AnalyticsStore,
    alerts: Sequence[Alert],
    *,
    notifier: WebhookNotifier | None,
    pause_hours: float,
    now: datetime,
) -> list[str]:
    """Notify each new alert through the signed webhook and pause where configured; what was done."""
    done: list[str] = []
    for alert in alerts:
        pause = pause_for_alert(store, alert, hours=pause_hours, now=now)
        if pause is not None:
            done.append(f"paused {alert.account} on {alert.platform} until {pause.paused_until.isoformat()}")
        if notifier is None:
            done.append(f"alert {alert.id} not sent: CONTENTFORGE_WEBHOOK_NOTIFY_URL is not set")
            continue
        try:
            notifier.notify_event(
                "analytics.reach_drop", str(alert.id), account=alert.account, platform=alert.platform,
                starts_on=alert.starts_on.isoformat(), detail=alert.detail, simulated=alert.simulated,
                paused_until=pause.paused_until.isoformat() if pause is not None else None,
            )  # fmt: skip
        except PublishError as exc:  # the alert stays recorded (and un-notified) for the next run
            done.append(f"alert {alert.id} not sent: {exc}")
            continue
        store.mark_notified(alert.id, now)
        done.append(f"alert {alert.id} sent ({alert.account} on {alert.platform}, from {alert.starts_on})")
    return done
