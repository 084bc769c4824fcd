"""One claimed publication through its publisher, with every outcome recorded in the ledger.

``publish_claimed`` is what a worker runs for each row ``claim_due`` handed it:

* the piece is checked again right before the platform call (status, verdict, verdict bound to the
  current content, judged caption); a mismatch fails the row instead of posting it;
* the claim's lease is renewed in the background while the platform calls run, and every write
  is fenced by the claim token: a worker whose claim was taken over gets the outcome ``lost`` and
  writes nothing;
* the container id is created only when the row has none, and stored before ``publish``; that a
  prepare started is noted first, so a resume after a crash inside ``prepare`` knows it;
* that the final ``publish`` call started is noted too (``publish_pending``, cleared when the post is
  recorded): a later attempt that finds it (a retry after a timeout, a reclaim after a crash, a
  rerun after the post could not be recorded) calls ``publish`` again only when the publisher can
  settle the earlier call (``publish_is_idempotent``); otherwise the row fails and says to check
  the account, because the post may be live already;
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
from contentforge.faults import fault_point
from contentforge.publishing.ledger import ClaimLost, PublicationLedger
from contentforge.publishing.protocol import (
    PermanentFailure,
    Publication,
    PublishedPost,
    Publisher,
    PublishError,
    RateLimited,
    TransientError,
)
from contentforge.publishing.webhook import WebhookNotifier

logger = logging.getLogger(__name__)

HELD_RETRY_S = 3600.0
"""How long a held publication waits before it is checked again (see ``hold_back``)."""


@dataclass(frozen=True)
class Outcome:
    publication_id: int
    piece_id: str
    platform: str
    status: str
    """``published``, ``deferred`` (back to scheduled), ``failed``, or ``lost`` (another run holds
    the claim now and records the outcome)."""
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
    lease_s: float | None = None,
) -> Outcome:
    """Publish one claimed publication exactly once; see the module docstring for outcomes."""
    try:
        return _publish(ledger, publisher, publication, notifier, lease_s)
    except ClaimLost as exc:
        return lost(publication, exc)


def lost(publication: Publication, error: ClaimLost) -> Outcome:
    logger.warning("publication %s (%s): %s", publication.id, publication.platform, error)
    return Outcome(publication.id, publication.piece_id, publication.platform, "lost", error=str(error))


def _publish(
    ledger: PublicationLedger,
    publisher: Publisher,
    publication: Publication,
    notifier: WebhookNotifier | None,
    lease_s: float | None,
) -> Outcome:
    token = publication.claim_token
    reason = ledger.publish_refusal(publication)
    if reason is not None:
        return fail(ledger, publication, f"not published: {reason}", notifier)
    container_id = publication.container_id
    with ledger.hold(publication, lease_s) as hold:
        unsettled = _unsettled_publish(publisher, publication)
        if unsettled is not None:
            return fail(ledger, publication, unsettled, notifier)
        try:
            if container_id is None:
                pending = bool(publication.detail.get("prepare_pending"))
                if pending and getattr(publisher, "prepare_posts", False):
                    return fail(
                        ledger,
                        publication,
                        f"not published again: an earlier attempt started posting on {publication.platform} "
                        "and stopped before the platform's id was stored, so the post may already be "
                        "live; check the account before scheduling it again",
                        notifier,
                    )
                if pending:
                    logger.warning(
                        "publication %s: an earlier prepare on %s stopped before its id was stored; a "
                        "second (never published) container is created",
                        publication.id,
                        publication.platform,
                    )
                ledger.begin_prepare(publication.id, token)
                try:
                    container_id = publisher.prepare(publication)
                except (RateLimited, PermanentFailure):
                    # The platform answered with a refusal: nothing was created. A TransientError
                    # (timeout, 5xx) may have created something, so the prepare stays pending.
                    ledger.end_prepare(publication.id, token)
                    raise
                fault_point("container-prepared")  # test-only: kill -9 before the container id is stored
                if container_id is not None:
                    ledger.record_container(publication.id, token, container_id)
                else:
                    ledger.end_prepare(publication.id, token)
            # The last moment to find out the claim moved on: the call below makes the post.
            if hold.lost.is_set():
                raise ClaimLost(f"publication {publication.id}: lease lost before the publish call")
            ledger.renew(publication.id, token, hold.lease_s)
            ledger.begin_publish(publication.id, token)
            try:
                post = publisher.publish(publication, container_id)
            except RateLimited:
                # The platform refused the call before posting; the rescheduled run may post.
                ledger.end_publish(publication.id, token)
                raise
            fault_point("post-published")  # test-only: kill -9 after the post, before it is recorded
        except RateLimited as exc:
            ledger.reschedule(publication.id, token, exc.retry_at, str(exc))
            logger.info(
                "publication %s (%s) deferred to %s: %s",
                publication.id,
                publication.platform,
                exc.retry_at,
                exc,
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
            ledger.note_error(publication.id, token, str(exc))
            raise
    return _published(ledger, publication, post, notifier)


def _unsettled_publish(publisher: Publisher, publication: Publication) -> str | None:
    """Why ``publish`` must not be called again: an earlier call started and its post was never
    recorded, and ``publisher`` cannot tell whether it went out; ``None`` when it may be called."""
    if not publication.detail.get("publish_pending"):
        return None
    if getattr(publisher, "publish_is_idempotent", False):
        logger.warning(
            "publication %s: an earlier publish call on %s was never recorded; %s settles it",
            publication.id,
            publication.platform,
            publisher.name,
        )
        return None
    started = publication.detail.get("publish_started_at") or "an earlier run"
    return (
        f"not published again: a previous attempt may already have posted it on {publication.platform} "
        f"(its publish call started at {started} and its answer was never recorded); check the "
        "account before scheduling it again"
    )


def _published(
    ledger: PublicationLedger, publication: Publication, post: PublishedPost, notifier: WebhookNotifier | None
) -> Outcome:
    ledger.mark_published(publication.id, publication.claim_token, post)
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
    row = ledger.mark_failed(publication.id, publication.claim_token, error)
    logger.warning("piece %s failed on %s: %s", publication.piece_id, publication.platform, row.last_error)
    _notify(notifier, "failed", publication, error=row.last_error)
    return Outcome(publication.id, publication.piece_id, publication.platform, "failed", error=row.last_error)


def hold_back(ledger: PublicationLedger, publication: Publication, reason: str) -> Outcome:
    """Put a claimed row back without posting it, because the user must act first (``reason`` says how).

    It is checked again every ``HELD_RETRY_S``, so it goes out once the cause is fixed.
    """
    retry_at = utcnow() + timedelta(seconds=HELD_RETRY_S)
    try:
        row = ledger.reschedule(publication.id, publication.claim_token, retry_at, f"held: {reason}")
    except ClaimLost as exc:
        return lost(publication, exc)
    logger.warning("publication %s (%s) %s", publication.id, publication.platform, row.last_error)
    return Outcome(
        publication.id,
        publication.piece_id,
        publication.platform,
        "deferred",
        error=row.last_error,
        retry_at=retry_at,
    )


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
    try:
        row = ledger.get(publication.id)
        if row.attempts >= max_attempts:
            return fail(ledger, publication, f"gave up after {row.attempts} attempts: {error}", notifier)
        retry_at = utcnow() + timedelta(seconds=backoff_s * 2 ** max(0, row.attempts - 1))
        ledger.reschedule(publication.id, publication.claim_token, retry_at, error)
    except ClaimLost as exc:
        return lost(publication, exc)
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
