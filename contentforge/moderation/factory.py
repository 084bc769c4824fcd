"""The ``Moderator`` that callers use, and the process-wide one built from settings.

Callers (tasks, the CLI) should not know which backends exist; they hand over an image and texts
and get a verdict. Building it once per process matters because the NudeNet detector and the
compiled text rules are reused by every piece of every batch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from PIL import Image

from contentforge.config import Settings
from contentforge.domain.models import ModerationVerdict
from contentforge.moderation.nudenet_backend import NudeNetBackend
from contentforge.moderation.policy import ModerationPolicy
from contentforge.moderation.protocol import CATEGORIES, ModerationBackend, ModerationInput
from contentforge.moderation.text_rules import TextRulesBackend


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
        item = ModerationInput(image=image, texts=tuple(texts))
        return self.policy.decide([(backend.name, backend.scores(item)) for backend in self.backends])


_moderators: dict[tuple[float, ...], Moderator] = {}
_moderators_lock = threading.Lock()


def build_moderator(settings: Settings) -> Moderator:
    """The local default moderator (NudeNet + text rules), cached per distinct policy settings.

    ``Settings`` is not hashable, so the cache is keyed on the values the policy reads; tests that
    change thresholds therefore get a matching moderator without clearing anything.
    """
    key = (
        *(float(getattr(settings, f"moderation_{c}")) for c in CATEGORIES),
        settings.moderation_suggestive,
        settings.moderation_restricted,
    )
    with _moderators_lock:
        moderator = _moderators.get(key)
        if moderator is None:
            moderator = Moderator(
                [NudeNetBackend(), TextRulesBackend()], ModerationPolicy.from_settings(settings)
            )
            _moderators[key] = moderator
        return moderator
