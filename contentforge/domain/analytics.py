"""What analytics collects and learns, as plain values shared by collectors, the store and learning.

A ``PostMetrics`` is one observation: a post, when it went out, what it was made of, and its metrics
at one nominal age. Collectors, the CSV import and the simulator all produce them; the store keeps
one snapshot per (post, age), so collecting or importing the same thing twice never counts twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

METRICS: tuple[str, ...] = ("reach", "views", "likes", "comments", "saves", "shares")
"""The metrics with a column of their own; anything else a platform reports goes into ``extra``."""
DEFAULT_SNAPSHOT_AGES_H: tuple[int, ...] = (1, 6, 24, 72, 168)
"""Ages at which a post's metrics are snapshotted: engagement is compared at equal ages only."""


def age_bucket(age_hours: float, ages: tuple[int, ...] = DEFAULT_SNAPSHOT_AGES_H) -> int | None:
    """The largest nominal age a post of ``age_hours`` has reached (None if younger than the first)."""
    reached = [a for a in ages if a <= age_hours]
    return max(reached) if reached else None


@dataclass(frozen=True)
class PostMetrics:
    """One post's metrics at one nominal age; ``source`` is ``api``, ``csv`` or ``simulated``."""

    account: str
    platform: str
    post_id: str
    posted_at: datetime
    age_hours: int
    collected_at: datetime
    source: str
    reach: int | None = None
    views: int | None = None
    likes: int | None = None
    comments: int | None = None
    saves: int | None = None
    shares: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    """What the post was made of: hashtags, hook_style, call_to_action, template_category, tier…"""
    piece_id: str | None = None
    publication_id: int | None = None

    @property
    def simulated(self) -> bool:
        return self.source == "simulated"

    @property
    def interactions(self) -> int:
        """Likes, comments, saves and shares: the numerator of engagement."""
        return sum(int(getattr(self, m) or 0) for m in ("likes", "comments", "saves", "shares"))


@dataclass(frozen=True)
class AccountDay:
    """One day of an account-level series (followers, reach)."""

    account: str
    platform: str
    day: date
    source: str
    followers: int | None = None
    reach: int | None = None

    @property
    def simulated(self) -> bool:
        return self.source == "simulated"


@dataclass(frozen=True)
class LearnedWeight:
    """A learned lift (1.0 = the account's typical post) with its interval and evidence."""

    kind: str
    key: str
    lift: float
    lower: float
    upper: float
    n_posts: int
