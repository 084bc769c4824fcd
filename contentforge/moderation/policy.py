"""Turns backend scores into a verdict, and a verdict into the platforms that may receive the piece.

Backends disagree and cover different inputs (image vs caption), so scores are merged by taking the
maximum per category: a piece is as risky as the most worried backend says. A category at or above
its threshold rejects the piece; otherwise the sexual score alone picks the tier, because tiers
exist to keep revealing-but-allowed content off platforms with stricter norms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from contentforge.config import Settings
from contentforge.domain.models import ModerationVerdict, Platform, Verdict
from contentforge.errors import InvalidInput
from contentforge.moderation.protocol import CATEGORIES, CategoryScores

DEFAULT_PLATFORM_VERDICTS: Mapping[Verdict, frozenset[Platform]] = MappingProxyType(
    {
        Verdict.safe: frozenset(Platform),
        Verdict.suggestive: frozenset({Platform.instagram, Platform.x, Platform.threads, Platform.tiktok}),
        # Restricted pieces need a human decision; rejected ones are never published.
        Verdict.restricted: frozenset(),
        Verdict.rejected: frozenset(),
    }
)
"""Which platforms accept each verdict automatically."""


@dataclass(frozen=True)
class ModerationPolicy:
    """Thresholds (score at or above rejects), sexual tier bounds and platform compatibility."""

    thresholds: Mapping[str, float]
    suggestive_at: float
    restricted_at: float
    platform_verdicts: Mapping[Verdict, frozenset[Platform]] = field(
        default_factory=lambda: DEFAULT_PLATFORM_VERDICTS
    )

    def __post_init__(self) -> None:
        missing = set(CATEGORIES) - set(self.thresholds)
        if missing:
            raise InvalidInput(f"moderation thresholds missing for {sorted(missing)}")
        sexual = self.thresholds["sexual"]
        if not 0.0 <= self.suggestive_at <= self.restricted_at <= sexual:
            # Out-of-order bounds would make a tier unreachable without anyone noticing.
            raise InvalidInput(
                "moderation tiers must satisfy suggestive <= restricted <= sexual threshold, got "
                f"{self.suggestive_at} / {self.restricted_at} / {sexual}"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> ModerationPolicy:
        """The policy configured by ``CONTENTFORGE_MODERATION_*``."""
        return cls(
            thresholds={c: float(getattr(settings, f"moderation_{c}")) for c in CATEGORIES},
            suggestive_at=settings.moderation_suggestive,
            restricted_at=settings.moderation_restricted,
        )

    def decide(self, scores: Sequence[tuple[str, CategoryScores]]) -> ModerationVerdict:
        """Merge ``(backend name, scores)`` pairs by max per category and classify the result."""
        if not scores:
            # No evidence is not the same as "safe": refuse rather than approve unseen content.
            raise ValueError("moderation needs scores from at least one backend")
        merged = dict.fromkeys(CATEGORIES, 0.0)
        source: dict[str, str] = {}
        for backend, result in scores:
            for category, value in result.scores.items():
                if category not in source or value > merged[category]:
                    merged[category], source[category] = value, backend

        reasons: list[str] = []
        for category in CATEGORIES:
            threshold = self.thresholds[category]
            if merged[category] >= threshold:
                reasons.append(
                    f"{category} {merged[category]:.2f} >= reject threshold {threshold:.2f} "
                    f"(from {source[category]})"
                )
        if reasons:
            verdict = Verdict.rejected
        else:
            verdict = self.tier(merged["sexual"])
            if verdict is not Verdict.safe:
                bound = self.suggestive_at if verdict is Verdict.suggestive else self.restricted_at
                reasons.append(
                    f"sexual {merged['sexual']:.2f} >= {verdict.value} bound {bound:.2f} "
                    f"(from {source['sexual']})"
                )
        evidence = [reason for _, result in scores for reason in result.reasons]
        return ModerationVerdict(
            verdict=verdict,
            scores=merged,
            reasons=reasons + evidence,
            backends=list(dict.fromkeys(name for name, _ in scores)),
        )

    def tier(self, sexual: float) -> Verdict:
        """The tier of a piece that crossed no reject threshold, from its sexual score."""
        if sexual < self.suggestive_at:
            return Verdict.safe
        if sexual < self.restricted_at:
            return Verdict.suggestive
        if sexual < self.thresholds["sexual"]:
            return Verdict.restricted
        return Verdict.rejected

    def platform_accepts(self, verdict: Verdict, platform: Platform) -> bool:
        """Whether ``platform`` may receive a piece with ``verdict`` without a human decision."""
        return Platform(platform) in self.platform_verdicts.get(Verdict(verdict), frozenset())

    def accepted_platforms(self, verdict: Verdict) -> tuple[Platform, ...]:
        """The platforms accepting ``verdict``, in ``Platform`` declaration order."""
        return tuple(p for p in Platform if self.platform_accepts(verdict, p))
