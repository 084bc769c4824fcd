"""Collect due snapshots: for every published post past a snapshot age, ask its platform's collector.

A post is snapshotted at the largest configured age it has reached and not stored yet: a collector
that runs late records the 24 h numbers as 24 h, never pretends they were the 6 h ones. A platform
that rate-limits or refuses stops for this run (the others go on) and the report says when to try
again or which permission is missing; what was already gathered is kept.

The account's series (followers, daily reach) comes with it, once a day per platform: Instagram's
daily reach of the last ``ACCOUNT_HISTORY_DAYS`` days plus today's followers, X's and TikTok's
follower count of today (their APIs keep no daily history). A platform token is one platform account,
so the series is stored for each persona whose posts were collected through it; a refusal of the
account call (e.g. TikTok's ``user.info.stats`` scope) is reported and the post metrics are kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from contentforge.analytics.features import post_features
from contentforge.analytics.image_features import image_features
from contentforge.analytics.protocol import Collector, MissingPermission
from contentforge.db.analytics import AnalyticsStore, DuePost
from contentforge.domain.analytics import DEFAULT_SNAPSHOT_AGES_H, AccountDay, PostMetrics
from contentforge.publishing.protocol import PublishError, RateLimited

ACCOUNT_HISTORY_DAYS = 28
"""Days of account series asked for (Instagram's insights answer at most 30 days per call)."""


@dataclass
class CollectReport:
    snapshots: int = 0
    account_days: int = 0
    """Account days (followers, reach) stored new by this run."""
    due: int = 0
    missing: list[str] = field(default_factory=list)
    """Posts the platform no longer knows (deleted) or has no insights for yet."""
    retry_at: dict[str, datetime] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skipped_platforms: list[str] = field(default_factory=list)
    """Platforms with due posts but no collector configured."""


def collect_due(
    store: AnalyticsStore,
    collectors: Mapping[str, Collector],
    *,
    now: datetime,
    ages: Sequence[int] = DEFAULT_SNAPSHOT_AGES_H,
    image_for: Callable[[str], bytes | None] | None = None,
) -> CollectReport:
    """``image_for(storage_key)`` gives a post's stored image, whose features are then recorded."""
    report = CollectReport()
    by_platform: dict[str, list[DuePost]] = defaultdict(list)
    for post in store.due_for_collection(now, ages):
        by_platform[post.platform].append(post)
    for platform, posts in sorted(by_platform.items()):
        report.due += len(posts)
        collector = collectors.get(platform)
        if collector is None:
            report.skipped_platforms.append(platform)
            continue
        try:
            found = collector.metrics([p.post_id for p in posts])
        except RateLimited as exc:
            report.retry_at[platform] = exc.retry_at
            report.errors[platform] = str(exc)
            continue
        except (MissingPermission, PublishError) as exc:
            report.errors[platform] = str(exc)
            continue
        observations = []
        for post in posts:
            remote = found.get(post.post_id)
            if remote is None:
                report.missing.append(f"{platform}:{post.post_id}")
                continue
            features = post_features(
                post.caption, template_id=post.template_id, tier=post.tier, hook_style=post.hook_style
            )
            if image_for is not None and post.storage_key:
                features |= _image_features_of(image_for, post.storage_key)
            observations.append(
                PostMetrics(
                    account=post.persona_id,
                    platform=platform,
                    post_id=post.post_id,
                    posted_at=post.published_at,
                    age_hours=max(post.due_ages),
                    collected_at=now,
                    source="api",
                    extra=dict(remote.extra),
                    features=features,
                    piece_id=post.piece_id,
                    publication_id=post.publication_id,
                    **remote.values,
                )
            )
        report.snapshots += store.record(observations).snapshots_added
        _collect_account_series(store, collector, sorted({p.persona_id for p in posts}), now, report)
    return report


def _collect_account_series(
    store: AnalyticsStore, collector: Collector, personas: Sequence[str], now: datetime, report: CollectReport
) -> None:
    """The platform account's series stored under each persona; skipped when today's is already there."""
    platform, today = collector.platform, now.date()
    wanted = [
        persona
        for persona in personas
        if not any(d.day == today and d.followers is not None for d in store.account_days(persona, platform))
    ]
    if not wanted:
        return
    try:
        days = collector.account_days(today - timedelta(days=ACCOUNT_HISTORY_DAYS), today)
    except (RateLimited, MissingPermission, PublishError) as exc:
        report.errors[f"{platform} account series"] = str(exc)
        return
    rows: list[AccountDay] = [replace(day, account=persona) for persona in wanted for day in days]
    report.account_days += store.record_account_days(rows)


def _image_features_of(image_for: Callable[[str], bytes | None], key: str) -> dict[str, float]:
    """The stored image's features; none when it is gone or unreadable (metrics still count)."""
    try:
        data = image_for(key)
        return image_features(data) if data else {}
    except (OSError, ValueError):
        return {}
