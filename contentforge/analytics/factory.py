"""Collectors from settings: a platform gets one when its token (and, for Instagram, user id) is set.

Every collector's HTTP client goes through the outbound policy of its URL setting (as the publishers
do), so the bearer token is only ever sent to a checked, pinned public address.
"""

from __future__ import annotations

import httpx

from contentforge.analytics.instagram import InstagramCollector
from contentforge.analytics.protocol import Collector
from contentforge.analytics.tiktok import TikTokCollector
from contentforge.analytics.x import XCollector
from contentforge.config import Settings
from contentforge.errors import InvalidInput
from contentforge.outbound import OutboundPolicy, OutboundRefused
from contentforge.publishing.http import DEFAULT_TIMEOUT


def _policy_client(settings: Settings, setting: str) -> httpx.Client:
    """A pinned client for URL ``setting``; raises ``OutboundRefused`` naming it for a private URL."""
    policy = OutboundPolicy.for_setting(setting, settings)
    policy.check_static(getattr(settings, setting))
    return policy.client(timeout=DEFAULT_TIMEOUT)


def build_collectors(settings: Settings) -> tuple[dict[str, Collector], dict[str, str]]:
    """``(collectors by platform, why each other platform has none)``: nothing is chosen silently.

    A platform whose API URL is refused by the outbound policy (a private or loopback address without
    ``CONTENTFORGE_ALLOW_PRIVATE_URLS``) gets no collector; the refusal is its reason, and the other
    platforms are still collected.
    """
    collectors: dict[str, Collector] = {}
    missing: dict[str, str] = {}
    try:
        token = settings.instagram_access_token
        if token is not None and token.get_secret_value() and settings.instagram_user_id:
            collectors["instagram"] = InstagramCollector(
                user_id=settings.instagram_user_id, access_token=token, base_url=settings.instagram_graph_url,
                client=_policy_client(settings, "instagram_graph_url"),
            )  # fmt: skip
        else:
            missing["instagram"] = (
                "set CONTENTFORGE_INSTAGRAM_USER_ID and CONTENTFORGE_INSTAGRAM_ACCESS_TOKEN"
            )
    except OutboundRefused as exc:
        missing["instagram"] = str(exc)
    try:
        if settings.x_access_token is not None and settings.x_access_token.get_secret_value():
            collectors["x"] = XCollector(
                access_token=settings.x_access_token, base_url=settings.x_api_url,
                client=_policy_client(settings, "x_api_url"),
            )  # fmt: skip
        else:
            missing["x"] = (
                "set CONTENTFORGE_X_ACCESS_TOKEN (a user-context token also reads non_public_metrics)"
            )
    except OutboundRefused as exc:
        missing["x"] = str(exc)
    try:
        if settings.tiktok_access_token is not None and settings.tiktok_access_token.get_secret_value():
            collectors["tiktok"] = TikTokCollector(
                access_token=settings.tiktok_access_token, base_url=settings.tiktok_api_url,
                client=_policy_client(settings, "tiktok_api_url"),
            )  # fmt: skip
        else:
            missing["tiktok"] = "set CONTENTFORGE_TIKTOK_ACCESS_TOKEN (scope video.list)"
    except OutboundRefused as exc:
        missing["tiktok"] = str(exc)
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
