"""Publishing pauses after a reach drop: hold a persona's posts on a platform until the pause ends.

A pause is recorded with its reason (``db.analytics.AnalyticsStore.pause``); a claimed publication
of a paused persona and platform goes back to ``scheduled`` at the pause's end instead of being
posted, so publishing resumes by itself when the pause runs out, or at once after
``contentforge analytics resume``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from contentforge.db.analytics import Alert, AnalyticsStore, Pause
from contentforge.publishing.ledger import ClaimLost, PublicationLedger
from contentforge.publishing.protocol import Publication
from contentforge.publishing.runner import Outcome, lost


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
