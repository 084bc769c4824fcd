"""Publishing: a small protocol, one module per backend, an exactly-once ledger and posting slots.

Backends: Instagram Graph API, X API v2, TikTok Content Posting API, a signed webhook, and the
local outbox (offline default). See ``protocol.py`` for the two-step contract that makes a crash
between "create container" and "publish" resumable without a second post.
"""

from contentforge.publishing.factory import (
    PublisherUnavailable,
    build_notifier,
    build_publisher,
    build_row_publisher,
    publisher_name,
)
from contentforge.publishing.ledger import (
    ClaimLost,
    PublicationLedger,
    PublicationRow,
    PublishRefused,
    ScheduleResult,
    idempotency_key,
)
from contentforge.publishing.protocol import (
    PermanentFailure,
    Publication,
    PublishedPost,
    Publisher,
    PublishError,
    QuotaExhausted,
    RateLimited,
    TransientError,
)
from contentforge.publishing.runner import Outcome, give_up, publish_claimed

__all__ = [
    "ClaimLost",
    "Outcome",
    "PermanentFailure",
    "Publication",
    "PublicationLedger",
    "PublicationRow",
    "PublishError",
    "PublishRefused",
    "PublishedPost",
    "Publisher",
    "PublisherUnavailable",
    "QuotaExhausted",
    "RateLimited",
    "ScheduleResult",
    "TransientError",
    "build_notifier",
    "build_publisher",
    "build_row_publisher",
    "give_up",
    "idempotency_key",
    "publish_claimed",
    "publisher_name",
]
