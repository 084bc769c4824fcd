"""The collector protocol and its errors: a platform's metrics for posts, and its account series.

Collectors raise the publishers' typed errors (``RateLimited`` with the platform's retry time,
``TransientError`` for 5xx and network faults, ``PermanentFailure``), plus ``MissingPermission`` when
the token lacks the insights permission: one line that names the permission to grant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from contentforge.domain.analytics import AccountDay
from contentforge.publishing.protocol import PermanentFailure, RateLimited, TransientError

__all__ = [
    "Collector",
    "MissingPermission",
    "PermanentFailure",
    "RateLimited",
    "RemoteMetrics",
    "RemotePost",
    "TransientError",
    "utc_now",
]


def utc_now() -> datetime:
    """The collectors' default clock: today's follower count is labelled with this day."""
    return datetime.now(UTC)


class MissingPermission(PermanentFailure):
    """The token cannot read insights; the message names the permission (scope) to grant."""

    def __init__(self, platform: str, permission: str, detail: str = "") -> None:
        self.platform = platform
        self.permission = permission
        suffix = f" ({detail})" if detail else ""
        super().__init__(
            f"{platform}: the access token lacks the {permission!r} permission needed to read metrics; "
            f"grant it to the app and issue a new token{suffix}"
        )


@dataclass(frozen=True)
class RemoteMetrics:
    """A post's metrics as the platform reports them now."""

    post_id: str
    values: dict[str, int]
    """Any of ``domain.analytics.METRICS``; a metric the platform does not report is absent."""
    extra: dict[str, Any] = field(default_factory=dict)
    posted_at: datetime | None = None


@dataclass(frozen=True)
class RemotePost:
    """A post found on the account (for history published outside ContentForge)."""

    post_id: str
    posted_at: datetime
    caption: str = ""


class Collector(Protocol):
    platform: str

    def metrics(self, post_ids: Sequence[str]) -> dict[str, RemoteMetrics]:
        """Current metrics of the given posts; posts the platform no longer knows are left out."""
        ...

    def list_posts(self, since: datetime, limit: int = 500) -> list[RemotePost]:
        """The account's posts since ``since``, newest first, following the platform's pagination."""
        ...

    def account_days(self, since: date, until: date) -> list[AccountDay]:
        """The account's daily series between the two days, as far as the platform offers one."""
        ...
