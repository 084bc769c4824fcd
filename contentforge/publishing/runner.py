"""One claimed publication through its publisher, with every outcome recorded in the ledger.

``publish_claimed`` is what a worker runs for each row ``claim_due`` handed it:

* the container id is created only when the row has none, and stored before ``publish``;
* ``RateLimited`` / ``QuotaExhausted`` put the row back to ``scheduled`` at the platform's retry time;
* ``PermanentFailure`` fails the row with the reason;
* ``TransientError`` (5xx, network) is re-raised for the caller's retry policy (Prefect task
  retries); ``give_up`` then reschedules with backoff, or fails the row after ``max_attempts``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from contentforge.db.models import utcnow
from contentforge.publishing.ledger import PublicationLedger
from contentforge.publishing.protocol import (
    PermanentFailure,
    Publication,
    Publisher,
    PublishError,
    RateLimited,
    TransientError,
)
from contentforge.publishing.webhook import WebhookNotifier

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    publication_id: int
    piece_id: str
    platform: str
    status: str
    """``published``, ``deferred`` (back to scheduled) or ``failed``."""
    post_id: str | None = None
    url: str | None = None
    error: str | None = None
    retry_at: datetime | None = None


def publish_claimed(
    ledger: PublicationLedger,
    publisher: Publisher,
    publication: Publication,
    *,
    notifier: WebhookNotifier | None = None,
) -> Outcome:
    """Publish one claimed publication exactly once; see the module docstring for outcomes."""
    container_id = publication.container_id
    try:
        if container_id is None:
            container_id = publisher.prepare(publication)
            if container_id is not None:
                ledger.record_container(publication.id, container_id)
        post = publisher.publish(publication, container_id)
    except RateLimited as exc:
        ledger.reschedule(publication.id, exc.retry_at, str(exc))
        logger.info(
            "publication %s (%s) deferred to %s: %s", publication.id, publication.platform, exc.retry_at, exc
        )
        return Outcome(
            publication.id,
            publication.piece_id,
            publication.platform,
            "deferred",
            error=str(exc),
            retry_at=exc.retry_at,
        )
    except PermanentFailure as exc:
        return fail(ledger, publication, str(exc), notifier)
    except TransientError as exc:
        ledger.note_error(publication.id, str(exc))
        raise
    ledger.mark_published(publication.id, post)
    logger.info(
        "piece %s published on %s: %s", publication.piece_id, publication.platform, post.url or post.post_id
    )
    _notify(notifier, "published", publication, post_id=post.post_id, url=post.url)
    return Outcome(
        publication.id, publication.piece_id, publication.platform, "published", post.post_id, post.url
    )


def fail(
    ledger: PublicationLedger, publication: Publication, error: str, notifier: WebhookNotifier | None = None
) -> Outcome:
    row = ledger.mark_failed(publication.id, error)
    logger.warning("piece %s failed on %s: %s", publication.piece_id, publication.platform, row.last_error)
    _notify(notifier, "failed", publication, error=row.last_error)
    return Outcome(publication.id, publication.piece_id, publication.platform, "failed", error=row.last_error)


def give_up(
    ledger: PublicationLedger,
    publication: Publication,
    error: str,
    *,
    max_attempts: int,
    backoff_s: float = 60.0,
    notifier: WebhookNotifier | None = None,
) -> Outcome:
    """After transient errors exhausted the in-run retries: retry later with backoff, or fail."""
    row = ledger.get(publication.id)
    if row.attempts >= max_attempts:
        return fail(ledger, publication, f"gave up after {row.attempts} attempts: {error}", notifier)
    retry_at = utcnow() + timedelta(seconds=backoff_s * 2 ** max(0, row.attempts - 1))
    ledger.reschedule(publication.id, retry_at, error)
    return Outcome(
        publication.id, publication.piece_id, publication.platform, "deferred", error=error, retry_at=retry_at
    )


def _notify(notifier: WebhookNotifier | None, event: str, publication: Publication, **fields: object) -> None:
    if notifier is None:
        return
    try:
        notifier.notify(event, publication, **fields)
    except PublishError as exc:  # a notification must never undo a publication
        logger.warning("webhook notification %s for publication %s failed: %s", event, publication.id, exc)
