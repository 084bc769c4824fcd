"""Content moderation: backends score a piece per category, a policy turns scores into a verdict.

Importing this package is cheap; NudeNet (cv2, onnxruntime) loads on the first image moderated.
"""

from contentforge.moderation.factory import Moderator, build_moderator
from contentforge.moderation.nudenet_backend import LABEL_WEIGHTS, NudeNetBackend
from contentforge.moderation.policy import DEFAULT_PLATFORM_VERDICTS, ModerationPolicy
from contentforge.moderation.protocol import CATEGORIES, CategoryScores, ModerationBackend, ModerationInput
from contentforge.moderation.text_rules import DEFAULT_RULES, TextRule, TextRulesBackend

__all__ = [
    "CATEGORIES",
    "DEFAULT_PLATFORM_VERDICTS",
    "DEFAULT_RULES",
    "LABEL_WEIGHTS",
    "CategoryScores",
    "ModerationBackend",
    "ModerationInput",
    "ModerationPolicy",
    "Moderator",
    "NudeNetBackend",
    "TextRule",
    "TextRulesBackend",
    "build_moderator",
]
