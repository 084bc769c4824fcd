"""Build the publisher for a platform from settings; say which one and why.

Per platform the choice is explicit (``CONTENTFORGE_PUBLISHER_INSTAGRAM=api`` etc.); the default
is the local outbox, which needs nothing and always works. Choosing ``api`` or ``webhook`` without
its credentials fails here, naming the missing variable, before any publication is claimed.

A publication keeps the publisher it was scheduled with (``publications.publisher``);
``build_row_publisher`` builds exactly that one and refuses (``PublisherUnavailable``) when the
configuration now selects another, so a post is never silently switched to another publisher.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from contentforge.config import Settings
from contentforge.db.sessions import SessionPolicy
from contentforge.domain.models import ModerationVerdict, Platform
from contentforge.errors import InvalidInput
from contentforge.moderation.disclosure import disclosure_for
from contentforge.moderation.policy import ModerationPolicy
from contentforge.moderation.protocol import ModerationInput
from contentforge.outbound import OutboundPolicy
from contentforge.publishing.http import DEFAULT_TIMEOUT
from contentforge.publishing.instagram import InstagramPublisher
from contentforge.publishing.ledger import CaptionJudge, PublicationLedger
from contentforge.publishing.media import MediaResolver
from contentforge.publishing.outbox import OutboxPublisher
from contentforge.publishing.protocol import Publication, Publisher
from contentforge.publishing.tiktok import TikTokPublisher
from contentforge.publishing.webhook import WebhookNotifier, WebhookPublisher
from contentforge.publishing.x import XPublisher
from contentforge.storage.factory import build_storage
from contentforge.storage.protocol import Storage

API_PLATFORMS = ("instagram", "x", "tiktok")


def publisher_kind(settings: Settings, platform: str) -> str:
    """``outbox``, ``webhook`` or ``api`` for ``platform``."""
    try:
        name = Platform(platform.strip().lower()).value
    except ValueError:
        raise InvalidInput(
            f"unknown platform {platform!r}; use one of {[p.value for p in Platform]}"
        ) from None
    if name in API_PLATFORMS:
        return str(getattr(settings, f"publisher_{name}"))
    return settings.publisher_other


def publisher_name(settings: Settings, platform: str) -> str:
    """The name stored in ``publications.publisher``: ``outbox``, ``webhook`` or the platform's API."""
    kind = publisher_kind(settings, platform)
    return platform.strip().lower() if kind == "api" else kind


def publisher_setting(platform: str) -> str:
    """The variable that selects ``platform``'s publisher."""
    name = platform.strip().lower()
    return f"CONTENTFORGE_PUBLISHER_{name.upper() if name in API_PLATFORMS else 'OTHER'}"


class PublisherUnavailable(InvalidInput):
    """A publication's own publisher is not the configured one any more, or cannot be built."""


def build_row_publisher(
    settings: Settings,
    publication: Publication,
    *,
    storage: Storage | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Publisher:
    """The publisher ``publication`` was scheduled with, or ``PublisherUnavailable`` saying what to do."""
    configured = publisher_name(settings, publication.platform)
    variable = publisher_setting(publication.platform)
    if configured != publication.publisher:
        wanted = "api" if publication.publisher == publication.platform else publication.publisher
        raise PublisherUnavailable(
            f"scheduled with the {publication.publisher!r} publisher, but {variable} now selects "
            f"{configured!r}; a scheduled post is never switched to another publisher. Set "
            f"{variable}={wanted} to publish it as scheduled (it is checked again hourly)"
        )
    try:
        return build_publisher(settings, publication.platform, storage=storage, client=client, sleep=sleep)
    except InvalidInput as exc:
        raise PublisherUnavailable(
            f"its publisher {publication.publisher!r} cannot be built: {exc}"
        ) from None


def caption_judge(settings: Settings) -> CaptionJudge:
    """The configured moderation's text backends, for captions no moderation pass judged."""
    from contentforge.moderation.factory import KNOWN_MODALITIES, build_backends  # loads NudeNet's deps

    policy = ModerationPolicy.from_settings(settings)
    backends = [b for b in build_backends(settings) if "text" in KNOWN_MODALITIES.get(b.name, {"text"})]

    def judge(caption: str) -> ModerationVerdict:
        item = ModerationInput(image=None, texts=(caption,))
        return policy.decide([(backend.name, backend.scores(item)) for backend in backends])

    return judge


def build_ledger(settings: Settings, sessions: SessionPolicy | None = None) -> PublicationLedger:
    """The publication ledger on the configured database, migrated to head, as every front end needs it.

    One constructor, so the CLI, the API and the publishing tasks judge unmoderated captions, label
    AI content and write missing captions the same way. ``sessions``: the repository's session policy
    (``Services.ledger`` passes it); without, the configured database is opened here.
    """
    from contentforge.db import Repository
    from contentforge.publishing.scheduling import offline_caption_writer

    if sessions is None:
        sessions = Repository.open(settings.resolved_database_url).sessions
    return PublicationLedger(
        sessions,
        ModerationPolicy.from_settings(settings),
        caption_writer=offline_caption_writer,
        caption_label=caption_with_disclosure(settings),
        caption_judge=caption_judge(settings),
    )


def outbox_dir(settings: Settings) -> str:
    return str(settings.data_dir / "outbox")


def build_publisher(
    settings: Settings,
    platform: str,
    *,
    storage: Storage | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Publisher:
    """The configured publisher for ``platform`` (raises ``InvalidInput`` naming a missing setting)."""
    kind = publisher_kind(settings, platform)
    media = MediaResolver(storage if storage is not None else build_storage(settings))
    if kind == "outbox":
        return OutboxPublisher(settings.data_dir / "outbox", media)
    if kind == "webhook":
        if not settings.webhook_url or settings.webhook_secret is None:
            raise InvalidInput(
                f"{platform} uses the webhook publisher: set CONTENTFORGE_WEBHOOK_URL and "
                "CONTENTFORGE_WEBHOOK_SECRET"
            )
        return WebhookPublisher(
            settings.webhook_url,
            settings.webhook_secret,
            client,
            policy=OutboundPolicy.for_setting("webhook_url", settings),
        )
    name = Platform(platform.strip().lower())
    if client is None:  # every platform API request goes through the outbound policy of its URL setting
        setting = {Platform.instagram: "instagram_graph_url", Platform.x: "x_api_url"}.get(
            name, "tiktok_api_url"
        )
        policy = OutboundPolicy.for_setting(setting, settings)
        policy.check_static(getattr(settings, setting))
        client = policy.client(timeout=DEFAULT_TIMEOUT)
    if name == Platform.instagram:
        if not settings.instagram_user_id or settings.instagram_access_token is None:
            raise InvalidInput(
                "instagram uses the Graph API publisher: set CONTENTFORGE_INSTAGRAM_USER_ID and "
                "CONTENTFORGE_INSTAGRAM_ACCESS_TOKEN (or CONTENTFORGE_PUBLISHER_INSTAGRAM=outbox)"
            )
        return InstagramPublisher(
            user_id=settings.instagram_user_id,
            access_token=settings.instagram_access_token,
            media=media,
            base_url=settings.instagram_graph_url,
            ai_disclosure_param=settings.instagram_ai_disclosure_param
            or _flag_name(disclosure_for(Platform.instagram, settings).flags),
            client=client,
            sleep=sleep,
            poll_interval_s=settings.publish_poll_interval_s,
            poll_max=settings.publish_poll_max,
        )
    if name == Platform.x:
        if settings.x_access_token is None:
            raise InvalidInput(
                "x uses the X API publisher: set CONTENTFORGE_X_ACCESS_TOKEN "
                "(or CONTENTFORGE_PUBLISHER_X=outbox)"
            )
        return XPublisher(
            access_token=settings.x_access_token, media=media, base_url=settings.x_api_url, client=client
        )
    if settings.tiktok_access_token is None:
        raise InvalidInput(
            "tiktok uses the Content Posting API publisher: set CONTENTFORGE_TIKTOK_ACCESS_TOKEN "
            "(or CONTENTFORGE_PUBLISHER_TIKTOK=outbox)"
        )
    return TikTokPublisher(
        access_token=settings.tiktok_access_token,
        media=media,
        base_url=settings.tiktok_api_url,
        privacy_level=settings.tiktok_privacy_level,
        is_aigc=settings.tiktok_is_aigc and bool(disclosure_for(Platform.tiktok, settings).flags),
        client=client,
        sleep=sleep,
        poll_interval_s=settings.publish_poll_interval_s,
        poll_max=settings.publish_poll_max,
    )


def build_notifier(settings: Settings, client: httpx.Client | None = None) -> WebhookNotifier | None:
    """The published/failed notifier when ``CONTENTFORGE_WEBHOOK_NOTIFY_URL`` is set, else ``None``."""
    if not settings.webhook_notify_url:
        return None
    if settings.webhook_secret is None:
        raise InvalidInput("CONTENTFORGE_WEBHOOK_NOTIFY_URL is set but CONTENTFORGE_WEBHOOK_SECRET is not")
    return WebhookNotifier(
        settings.webhook_notify_url,
        settings.webhook_secret,
        client,
        policy=OutboundPolicy.for_setting("webhook_notify_url", settings),
    )


def describe(settings: Settings, platforms: tuple[str, ...] = ("instagram", "x", "tiktok")) -> dict[str, str]:
    """Which publisher each platform uses, for logs and the CLI."""
    return {platform: publisher_name(settings, platform) for platform in platforms}


def _flag_name(flags: dict[str, object]) -> str | None:
    """The top-level request field of a platform's AI flag (``CONTENTFORGE_AI_DISCLOSURE`` decides)."""
    return next(iter(flags), None)


def caption_with_disclosure(settings: Settings) -> Callable[[str, str], str]:
    """``(platform, caption) -> caption`` with the platform's AI label where the disclosure mode asks."""

    def label(platform: str, caption: str) -> str:
        return disclosure_for(platform, settings).apply_caption(caption)

    return label
