"""Publishing tasks: schedule a batch into posting slots, claim due publications, publish one.

``publish_publication`` retries transient failures (5xx, network) with exponential backoff; a
rate limit or a used-up quota is not retried here: the ledger moves the row back to ``scheduled``
at the platform's retry time and the next ``publish_due`` run picks it up. Each retry re-reads the
row as the holder of its claim token, so a container created by a failed attempt is reused, never
created again, and a run whose claim was taken over writes nothing (outcome ``lost``). A row is
published only through the publisher it was scheduled with; when the configuration now selects
another one, the row is held and says which setting to change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import Task, exponential_backoff

from contentforge.analytics.feedback import LearnedSlots, batch_seed
from contentforge.analytics.pauses import defer_if_paused
from contentforge.db.analytics import AnalyticsStore
from contentforge.publishing import (
    Outcome,
    PublicationLedger,
    TransientError,
    build_notifier,
    give_up,
    publish_claimed,
    publisher_name,
)
from contentforge.publishing.cover_binding import cover_note
from contentforge.publishing.factory import (
    PublisherUnavailable,
    build_row_publisher,
)
from contentforge.publishing.ledger import ClaimLost
from contentforge.publishing.runner import hold_back, lost
from contentforge.publishing.scheduling import parse_slot_times, schedule_batch
from tasks import resources

PUBLISH_RETRIES = 3


def ledger() -> PublicationLedger:
    """The ledger on the configured database (migrated to head on first use in this process)."""
    return resources.services().ledger


def _is_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only what a retry can fix: transient errors, not refusals or permanent failures."""
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            error = state.result(raise_on_failure=False)  # type: ignore[assignment]
        except Exception:  # an unreadable result is not worth retrying
            return False
    return isinstance(error, TransientError)


@task(cache_policy=NO_CACHE, persist_result=False)
def schedule_batch_publications(
    batch_id: str, platforms: list[str], start: datetime | None = None
) -> dict[str, Any]:
    """Schedule the batch's publishable pieces on ``platforms``; returns counts, slots and refusals."""
    settings = resources.settings()
    # Posting hours learned for the persona and platform replace the configured slots where there is
    # enough data; every scheduled piece records why its slot was chosen.
    learned = LearnedSlots(
        AnalyticsStore(resources.repository().sessions),
        default=parse_slot_times(settings.publish_slots),
        daily_limit=settings.publish_daily_limit,
        seed=batch_seed(batch_id),
    )
    outcome = schedule_batch(
        ledger(),
        batch_id,
        platforms,
        start=start or datetime.now(UTC),
        slot_times=parse_slot_times(settings.publish_slots),
        daily_limit=settings.publish_daily_limit,
        publisher_for=lambda platform: publisher_name(settings, platform),
        slot_times_for=learned.slot_times_for,
    )
    for (persona_id, platform), _ in learned.reasons.items():
        learned.record(persona_id, platform, outcome.slots.get(platform, []))
    rows = ledger().list(batch_id=batch_id, limit=None)
    return {
        "batch_id": batch_id,
        "scheduled": len(outcome.result.scheduled),
        "already_scheduled": len(outcome.result.existing),
        "refused": outcome.result.refused_count,
        "refusals": [reason for _, _, reason in outcome.result.refused],
        "slots": {p: [(piece, when.isoformat()) for piece, when in s] for p, s in outcome.slots.items()},
        # Which image each publication binds where a cover was chosen (a variation's, or why not).
        "covers": [
            f"{row.piece_id} on {row.platform} {note}"
            for row in rows
            if row.platform in outcome.slots and (note := cover_note(row.detail))
        ],
    }


@task(cache_policy=NO_CACHE, persist_result=False)
def claim_due_publications(limit: int, stale_after_s: float | None = None) -> list[tuple[int, str]]:
    """Claim up to ``limit`` due publications for this run: ``(id, claim token)`` of each.

    Claims are guarded, so two runs never share one; the token fences every later write.
    """
    settings = resources.settings()
    stale = settings.publish_stale_after_s if stale_after_s is None else stale_after_s
    return [(p.id, str(p.claim_token)) for p in ledger().claim_due(limit=limit, stale_after_s=stale)]


@task(
    task_run_name="publish-{publication_id}",
    retries=PUBLISH_RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=_is_transient,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def publish_publication(publication_id: int, claim_token: str) -> Outcome:
    """Publish one claimed publication through the publisher it was scheduled with (exactly once)."""
    settings = resources.settings()
    book = ledger()
    try:
        # Re-read as the claim holder: a retry reuses a stored container id.
        publication = book.claimed(publication_id, claim_token)
    except ClaimLost as exc:
        return lost(book.publication(publication_id), exc)
    paused = defer_if_paused(
        book, AnalyticsStore(resources.repository().sessions), publication, now=datetime.now(UTC)
    )
    if paused is not None:  # a reach drop paused this persona on this platform
        return paused
    try:
        publisher = build_row_publisher(settings, publication, storage=resources.storage())
    except PublisherUnavailable as exc:
        return hold_back(book, publication, str(exc))
    return publish_claimed(
        book,
        publisher,
        publication,
        notifier=build_notifier(settings),
        lease_s=settings.publish_stale_after_s,
    )


@task(cache_policy=NO_CACHE, persist_result=False)
def release_publication(publication_id: int, claim_token: str, error: str) -> Outcome:
    """After the retries ran out: back to scheduled with backoff, or failed after max attempts."""
    settings = resources.settings()
    book = ledger()
    publication = book.publication(publication_id)
    if publication.claim_token != claim_token:
        return lost(publication, ClaimLost(f"publication {publication_id}: claim taken over; not released"))
    return give_up(
        book,
        publication,
        error,
        max_attempts=settings.publish_max_attempts,
        notifier=build_notifier(settings),
    )
