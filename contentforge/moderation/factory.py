"""The ``Moderator`` that callers use, and the process-wide one built from settings.

Callers (tasks, the CLI) should not know which backends exist; they hand over an image and texts
and get a verdict. Building it once per process matters because the NudeNet detector and the
compiled text rules are reused by every piece of every batch.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence

from PIL import Image

from contentforge.config import Settings
from contentforge.domain.models import ModerationVerdict
from contentforge.errors import InvalidInput
from contentforge.moderation.cache import ModerationCache
from contentforge.moderation.nudenet_backend import NudeNetBackend
from contentforge.moderation.openai_backend import OpenAIModerationBackend, outbound_policy
from contentforge.moderation.policy import ALL_MODALITIES, Assessment, ModerationPolicy
from contentforge.moderation.protocol import CATEGORIES, ModerationBackend, ModerationInput
from contentforge.moderation.text_rules import TextRulesBackend

BACKEND_CHOICES: tuple[str, ...] = ("local", "openai")
"""Backend names: local = NudeNet (image) + text rules; openai = omni-moderation (image + text)."""

KNOWN_MODALITIES: dict[str, frozenset[str]] = {
    "nudenet": frozenset({"image"}),
    "text_rules": frozenset({"text"}),
    "openai": ALL_MODALITIES,
}
"""What each backend looks at, for the policy's disagreement rule; a backend may override it with a
``modalities`` attribute, and an unknown one is taken to see everything."""


def parse_backends(value: str) -> tuple[str, ...]:
    """The configured backend names, validated, in order and without duplicates."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in BACKEND_CHOICES]
    if unknown or not names:
        raise InvalidInput(
            f"CONTENTFORGE_MODERATION_BACKENDS={value!r}: use a comma list of {', '.join(BACKEND_CHOICES)}"
        )
    return names


class Moderator:
    """Runs every backend on a piece and lets the policy decide.

    A backend that raises is not caught: an unmoderated piece must fail, never pass as safe.
    """

    def __init__(self, backends: Sequence[ModerationBackend], policy: ModerationPolicy) -> None:
        if not backends:
            raise ValueError("a Moderator needs at least one backend")
        self.backends = tuple(backends)
        self.policy = policy

    def moderate(self, image: Image.Image | None, texts: Sequence[str] = ()) -> ModerationVerdict:
        """The verdict alone (review rules not applied): for callers that only need the tier."""
        item = ModerationInput(image=image, texts=tuple(texts))
        return self.policy.decide([(backend.name, backend.scores(item)) for backend in self.backends])

    def assess(self, image: Image.Image | None, texts: Sequence[str] = ()) -> Assessment:
        """The verdict and whether a human must confirm it (the policy's borderline/disputed rules)."""
        item = ModerationInput(image=image, texts=tuple(texts))
        scores = [(backend.name, backend.scores(item)) for backend in self.backends]
        modalities = {
            b.name: frozenset(getattr(b, "modalities", KNOWN_MODALITIES.get(b.name, ALL_MODALITIES)))
            for b in self.backends
        }
        return self.policy.assess(scores, modalities)


_moderators: dict[tuple[object, ...], Moderator] = {}
_moderators_lock = threading.Lock()


def moderation_base_url(settings: Settings) -> str | None:
    """``openai_moderation_base_url``, else the shared ``openai_base_url`` (if that setting exists)."""
    return settings.openai_moderation_base_url or getattr(settings, "openai_base_url", None)


def build_backends(settings: Settings) -> list[ModerationBackend]:
    """The backends ``CONTENTFORGE_MODERATION_BACKENDS`` names; a missing OpenAI key fails here."""
    backends: list[ModerationBackend] = []
    for name in parse_backends(settings.moderation_backends):
        if name == "local":
            backends += [NudeNetBackend(), TextRulesBackend()]
        else:
            backends.append(
                OpenAIModerationBackend(
                    settings.openai_api_key,
                    model=settings.openai_moderation_model,
                    base_url=moderation_base_url(settings),
                    max_retries=settings.openai_max_retries,
                    timeout_s=settings.openai_timeout_s,
                    cache=ModerationCache(settings.data_dir / "cache" / "moderation"),
                    policy=outbound_policy(settings),
                )
            )
    return backends


def validate_moderation_settings(settings: Settings) -> None:
    """Fail fast (before a batch plans anything) on bad backend names, a missing key or bad tiers."""
    names = parse_backends(settings.moderation_backends)
    if "openai" in names and not (settings.openai_api_key and settings.openai_api_key.get_secret_value()):
        raise InvalidInput(
            "CONTENTFORGE_MODERATION_BACKENDS includes openai but CONTENTFORGE_OPENAI_API_KEY is not set"
        )
    ModerationPolicy.from_settings(settings)


def build_moderator(settings: Settings) -> Moderator:
    """The configured moderator, cached per distinct moderation settings.

    ``Settings`` is not hashable, so the cache is keyed on the values the backends and the policy
    read; tests that change thresholds therefore get a matching moderator without clearing anything.
    The key holds a hash of the API key, never the key itself.
    """
    validate_moderation_settings(settings)
    key_hash = (
        hashlib.sha256(settings.openai_api_key.get_secret_value().encode()).hexdigest()
        if settings.openai_api_key
        else None
    )
    key = (
        *(float(getattr(settings, f"moderation_{c}")) for c in CATEGORIES),
        settings.moderation_suggestive,
        settings.moderation_restricted,
        settings.moderation_review_margin,
        settings.moderation_disagreement,
        json.dumps(settings.platform_tiers, sort_keys=True),
        parse_backends(settings.moderation_backends),
        moderation_base_url(settings),
        settings.openai_moderation_model,
        settings.openai_max_retries,
        settings.openai_timeout_s,
        str(settings.data_dir),
        key_hash,
    )
    with _moderators_lock:
        moderator = _moderators.get(key)
        if moderator is None:
            moderator = Moderator(build_backends(settings), ModerationPolicy.from_settings(settings))
            _moderators[key] = moderator
        return moderator
