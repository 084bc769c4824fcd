"""Publishing pauses after a reach drop: hold a persona's posts on a platform until the pause ends.

A pause is recorded with its reason (``db.analytics.AnalyticsStore.pause``); a claimed publication
of a paused persona and platform goes back to ``scheduled`` at the pause's end instead of being
posted, so publishing resumes by itself when the pause runs out, or at once after
``contentforge analytics resume``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from contentforge.db.analytics import ALERT_WINDOW, Alert, AnalyticsStore, Pause
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
    """Pause the alert's account (a persona id) on its platform for ``hours``; none for 0 hours.

    Once per alert: acting on the same alert again (its notification failed, a run crashed) returns
    the pause it already made, neither extended nor re-created after a person's resume.
    """
    if hours <= 0 or alert.simulated:
        return None
    depth = alert.detail.get("depth")
    reason = (
        f"reach drop since {alert.starts_on.isoformat()} (reach at {depth:.0%} of baseline, alert {alert.id})"
        if isinstance(depth, float)
        else f"reach drop since {alert.starts_on.isoformat()} (alert {alert.id})"
    )
    pause, _ = store.pause_for_alert(alert.id, until=now + timedelta(hours=hours), reason=reason, now=now)
    return pause


def act_on_alerts(
    store: AnalyticsStore,
    alerts: Sequence[Alert],
    *,
    notifier: WebhookNotifier | None,
    pause_hours: float,
    now: datetime,
) -> list[str]:
    """Notify each alert through the signed webhook and pause where configured; what was done.

    An alert is marked notified only once the webhook accepted it; until then it stays pending
    (``AnalyticsStore.pending_alerts``) and the next run sends it again, with the same key.
    """
    done: list[str] = []
    for alert in alerts:
        pause = pause_for_alert(store, alert, hours=pause_hours, now=now)
        if pause is not None and pause.resumed_at is not None:
            pause = None  # a person resumed publishing: the alert no longer announces a pause
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


def act_on_pending_alerts(
    store: AnalyticsStore,
    *,
    notifier: WebhookNotifier | None,
    pause_hours: float,
    now: datetime,
    window: timedelta = ALERT_WINDOW,
) -> list[str]:
    """Act on every real alert not yet notified (detected within ``window``), whichever run found it.

    What the ``learn`` flow does after learning: an alert found by a run that crashed before acting,
    or whose webhook call failed, is sent (and its persona paused, once) by the next run.
    """
    return act_on_alerts(
        store,
        store.pending_alerts(now=now, window=window),
        notifier=notifier,
        pause_hours=pause_hours,
        now=now,
    )
