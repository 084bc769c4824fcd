"""Collectors from settings: a platform gets one when its token (and, for Instagram, user id) is set."""

from __future__ import annotations

from contentforge.analytics.instagram import InstagramCollector
from contentforge.analytics.protocol import Collector
from contentforge.analytics.tiktok import TikTokCollector
from contentforge.analytics.x import XCollector
from contentforge.config import Settings
from contentforge.errors import InvalidInput


def build_collectors(settings: Settings) -> tuple[dict[str, Collector], dict[str, str]]:
    """``(collectors by platform, why each other platform has none)``: nothing is chosen silently."""
    collectors: dict[str, Collector] = {}
    missing: dict[str, str] = {}
    token = settings.instagram_access_token
    if token is not None and token.get_secret_value() and settings.instagram_user_id:
        collectors["instagram"] = InstagramCollector(
            user_id=settings.instagram_user_id, access_token=token, base_url=settings.instagram_graph_url
        )
    else:
        missing["instagram"] = "set CONTENTFORGE_INSTAGRAM_USER_ID and CONTENTFORGE_INSTAGRAM_ACCESS_TOKEN"
    if settings.x_access_token is not None and settings.x_access_token.get_secret_value():
        collectors["x"] = XCollector(access_token=settings.x_access_token, base_url=settings.x_api_url)
    else:
        missing["x"] = "set CONTENTFORGE_X_ACCESS_TOKEN (a user-context token also reads non_public_metrics)"
    if settings.tiktok_access_token is not None and settings.tiktok_access_token.get_secret_value():
        collectors["tiktok"] = TikTokCollector(
            access_token=settings.tiktok_access_token, base_url=settings.tiktok_api_url
        )
    else:
        missing["tiktok"] = "set CONTENTFORGE_TIKTOK_ACCESS_TOKEN (scope video.list)"
    return collectors, missing


def snapshot_ages(settings: Settings) -> tuple[int, ...]:
    """``CONTENTFORGE_ANALYTICS_SNAPSHOT_AGES`` as sorted hours; a bad entry is refused by name."""
    ages: set[int] = set()
    for part in filter(None, (p.strip() for p in settings.analytics_snapshot_ages.split(","))):
        if not part.isdigit() or not 1 <= int(part) <= 24 * 90:
            raise InvalidInput(
                f"CONTENTFORGE_ANALYTICS_SNAPSHOT_AGES: {part!r} is not a number of hours (1-2160)"
            )
        ages.add(int(part))
    if not ages:
        raise InvalidInput("CONTENTFORGE_ANALYTICS_SNAPSHOT_AGES is empty (e.g. 1,6,24,72,168)")
    return tuple(sorted(ages))
