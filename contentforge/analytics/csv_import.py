"""Import platform CSV exports: the way to bring in history from before ContentForge.

Each platform has a documented column mapping (``COLUMNS``; ``docs/analytics.md`` lists it): the
export's header names (any of the aliases, case and spacing ignored) → ContentForge's fields. A
ContentForge-native header (``post_id,posted_at,reach,views,likes,comments,saves,shares,...``) is
accepted for every platform too.

The whole file is checked before anything is written: a missing column, an unreadable date or a
negative count refuses the import with one line naming the column or the row. A post's snapshot age
is the largest configured age it had reached when the file was exported (``exported_at``), so the
same export imported twice replaces its numbers instead of adding them, and a later export of the
same posts adds the later age.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from contentforge.analytics.features import post_features
from contentforge.db.analytics import AnalyticsStore, RecordCounts
from contentforge.domain.analytics import DEFAULT_SNAPSHOT_AGES_H, METRICS, PostMetrics, age_bucket
from contentforge.errors import InvalidInput

REQUIRED = ("post_id", "posted_at")
OPTIONAL = (*METRICS, "caption", "hook_style", "call_to_action", "template_category", "tier")

COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    # Meta Business Suite → Insights → Content → Export (Instagram posts).
    "instagram": {
        "post_id": ("Post ID",),
        "posted_at": ("Publish time",),
        "reach": ("Reach",),
        "views": ("Views", "Impressions"),
        "likes": ("Likes",),
        "comments": ("Comments",),
        "saves": ("Saves",),
        "shares": ("Shares",),
        "caption": ("Description", "Caption"),
    },
    # X Analytics → Posts → Export data (per-post activity).
    "x": {
        "post_id": ("Tweet id", "Post id"),
        "posted_at": ("time", "Date"),
        "views": ("impressions",),
        "likes": ("likes",),
        "comments": ("replies",),
        "shares": ("retweets", "reposts"),
        "saves": ("bookmarks",),
        "caption": ("Tweet text", "Post text"),
    },
    # TikTok Studio → Analytics → Content → Download data.
    "tiktok": {
        "post_id": ("Video ID",),
        "posted_at": ("Post time", "Date posted"),
        "views": ("Total views", "Video views"),
        "likes": ("Total likes", "Likes"),
        "comments": ("Total comments", "Comments"),
        "shares": ("Total shares", "Shares"),
        "saves": ("Add to Favorites", "Favorites"),
        "caption": ("Video title", "Title"),
    },
}
DATE_FORMATS = ("%m/%d/%Y %H:%M", "%Y-%m-%d %H:%M %z", "%Y-%m-%d %H:%M", "%Y-%m-%d")
"""Beside ISO 8601: Meta's ``03/02/2026 08:00``, X's ``2026-03-02 08:00 +0000``, dates alone."""


@dataclass(frozen=True)
class ImportResult:
    rows: int
    skipped_too_young: int
    duplicate_rows: int
    """Rows repeating a post id earlier in the same file (the last one counts)."""
    counts: RecordCounts


def _norm(name: str) -> str:
    return " ".join(name.strip().lower().replace("_", " ").split())


def _resolve_columns(platform: str, header: list[str]) -> dict[str, str]:
    """ContentForge field → the header name carrying it; refuses a header missing a required column."""
    present = {_norm(h): h for h in header}
    mapping = COLUMNS[platform]
    resolved: dict[str, str] = {}
    for field in (*REQUIRED, *OPTIONAL):
        for alias in (field, *mapping.get(field, ())):
            if _norm(alias) in present:
                resolved[field] = present[_norm(alias)]
                break
    missing = [f for f in REQUIRED if f not in resolved]
    if missing:
        wanted = ", ".join(repr(mapping[f][0]) + f" (or {f!r})" for f in missing)
        raise InvalidInput(f"{platform} CSV lacks the column(s) {wanted}; its header is {', '.join(header)}")
    return resolved


def _parse_time(value: str) -> datetime:
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        for fmt in DATE_FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            raise ValueError(text) from None
    # Exports without an offset are in UTC (the documented export setting).
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _count(value: str) -> int | None:
    text = value.strip().replace(",", "")
    if text in ("", "-", "--"):
        return None
    number = int(float(text))
    if number < 0:
        raise ValueError(value)
    return number


def parse_csv(
    text: str,
    *,
    platform: str,
    account: str,
    exported_at: datetime,
    ages: tuple[int, ...] = DEFAULT_SNAPSHOT_AGES_H,
) -> tuple[list[PostMetrics], int, int]:
    """The file's observations, the rows too young for a first snapshot, and repeated rows."""
    if platform not in COLUMNS:
        raise InvalidInput(f"no CSV column mapping for platform {platform!r}; known: {', '.join(COLUMNS)}")
    if exported_at.tzinfo is None:
        raise InvalidInput("exported_at must be timezone-aware")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames:
        raise InvalidInput(f"the {platform} CSV is empty")
    columns = _resolve_columns(platform, list(reader.fieldnames))
    observations: dict[str, PostMetrics] = {}
    too_young = duplicates = 0
    for line, row in enumerate(reader, start=2):
        post_id = (row.get(columns["post_id"]) or "").strip()
        if not post_id:
            raise InvalidInput(f"row {line}: empty {columns['post_id']!r}")
        raw_time = row.get(columns["posted_at"]) or ""
        try:
            posted_at = _parse_time(raw_time)
        except ValueError:
            raise InvalidInput(
                f"row {line}: {columns['posted_at']!r} is not a date: {raw_time!r} "
                "(expected ISO 8601, 03/02/2026 08:00 or 2026-03-02 08:00 +0000)"
            ) from None
        values: dict[str, int | None] = {}
        for metric in METRICS:
            if metric in columns:
                raw = row.get(columns[metric]) or ""
                try:
                    values[metric] = _count(raw)
                except ValueError:
                    raise InvalidInput(f"row {line}: {columns[metric]!r} is not a count: {raw!r}") from None
        age = age_bucket((exported_at - posted_at).total_seconds() / 3600, ages)
        if age is None:
            too_young += 1
            continue
        if post_id in observations:
            duplicates += 1
        text_fields = {
            f: (row.get(columns[f]) or "").strip() for f in OPTIONAL if f in columns and f not in METRICS
        }
        features = post_features(
            text_fields.get("caption", ""),
            tier=text_fields.get("tier") or None,
            hook_style=text_fields.get("hook_style") or None,
            call_to_action=text_fields.get("call_to_action") or None,
        )
        if text_fields.get("template_category"):
            features["template_category"] = text_fields["template_category"]
        observations[post_id] = PostMetrics(
            account=account,
            platform=platform,
            post_id=post_id,
            posted_at=posted_at,
            age_hours=age,
            collected_at=exported_at,
            source="csv",
            features=features,
            **values,  # type: ignore[arg-type]
        )
    return list(observations.values()), too_young, duplicates


def import_csv(
    store: AnalyticsStore,
    source: Path | str,
    *,
    platform: str,
    account: str,
    exported_at: datetime | None = None,
    ages: Iterable[int] = DEFAULT_SNAPSHOT_AGES_H,
) -> ImportResult:
    """Check the whole file, then store it; ``exported_at`` defaults to the file's modification time."""
    path = Path(source)
    if not path.is_file():
        raise InvalidInput(f"no CSV file at {str(path)!r}")
    if exported_at is None:
        exported_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{str(path)!r} is not UTF-8 text; export the CSV as UTF-8") from None
    observations, too_young, duplicates = parse_csv(
        text, platform=platform, account=account, exported_at=exported_at, ages=tuple(sorted(ages))
    )
    counts = store.record(observations)
    return ImportResult(len(observations) + too_young + duplicates, too_young, duplicates, counts)
