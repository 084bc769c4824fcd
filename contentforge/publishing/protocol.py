"""The publisher protocol, the publication it receives and the typed errors it raises.

Publishing is split in two calls so that a crash in between is resumable:

1. ``prepare(publication)`` creates the platform's intermediate object (an Instagram media
   container, an X media upload, a TikTok publish id) and returns its id, or ``None`` when the
   platform needs none. The ledger stores this id *before* step 2 runs.
2. ``publish(publication, container_id)`` makes the post visible and returns where it is.

On a rerun the stored id is handed to ``publish`` again and ``prepare`` is not called again for
the same publication, so a crash between the steps never creates a second post. A crash *during*
``prepare`` (after the platform created its object, before the ledger stored the id) cannot be
closed from this side: the ledger notes that a prepare started, and on resume a publisher whose
``prepare`` already posts (``prepare_posts = True``, TikTok's direct post) is not prepared again;
for the others a second, never-published container or upload is created and the row says so.

The final ``publish`` call is guarded the same way: the ledger notes ``publish_pending`` before it
and clears it when the post is recorded. A later attempt (a retry after a timeout, a reclaim after a
crash, a rerun after the outcome failed to be recorded) that finds the note calls ``publish`` again
only when the publisher says a repeated call cannot post twice (``publish_is_idempotent = True``:
it checks what the earlier call did, or the receiver deduplicates by the idempotency key); the
others fail the row and say to check the account.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from contentforge.errors import ContentForgeError


@dataclass(frozen=True)
class Publication:
    """One piece on one platform, as a publisher needs it (detached from any database session)."""

    id: int
    piece_id: str
    persona_id: str
    platform: str
    publisher: str
    idempotency_key: str
    caption: str
    media_url: str | None
    storage_key: str | None = None
    alt_text: str = ""
    container_id: str | None = None
    attempts: int = 0
    scheduled_for: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    claim_token: str | None = None
    """The claim this worker holds; every write of the outcome is fenced by it."""
    lease_s: float | None = None
    """The claim's lease length, renewed while the platform call runs."""
    content_sha256: str | None = None
    """The sha256 of the stored image moderation judged (``pieces.content_sha256``); the bytes sent
    to a platform are checked against it (``MediaResolver``)."""


@dataclass(frozen=True)
class PublishedPost:
    """Where a post ended up; ``post_id``/``url`` may be unknown (e.g. a private TikTok post)."""

    post_id: str | None
    url: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class PublishError(ContentForgeError):
    """Base class of everything a publisher raises about one publication."""


class TransientError(PublishError):
    """A network error or a 5xx: the same call may succeed if retried with backoff."""


class RateLimited(PublishError):
    """The platform asked us to wait; ``retry_at`` is when to try again (UTC)."""

    def __init__(self, message: str, retry_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at

    @classmethod
    def after(cls, message: str, seconds: float) -> RateLimited:
        return cls(message, datetime.now(UTC) + timedelta(seconds=max(0.0, seconds)))


class QuotaExhausted(RateLimited):
    """A posting quota (e.g. Instagram's 50 posts per 24 h) is used up; the publication waits."""


class PermanentFailure(PublishError):
    """Retrying cannot help (bad media, refused caption, missing permission); the user must act."""


class Publisher(Protocol):
    """A backend that can put a publication on a platform (or into an outbox, or a webhook)."""

    name: str
    publish_is_idempotent: bool
    """True when calling ``publish`` again after an attempt whose answer was lost cannot make a
    second post (it settles the earlier call: a container's status, a publish id's status, a file
    written by idempotency key, a receiver that drops a repeated ``Idempotency-Key``)."""

    def prepare(self, publication: Publication) -> str | None:
        """Create the platform's intermediate object and return its id (None if there is none)."""
        ...

    def publish(self, publication: Publication, container_id: str | None) -> PublishedPost:
        """Make the post visible using the id ``prepare`` returned (possibly in an earlier run)."""
        ...
