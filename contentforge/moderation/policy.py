"""Turns backend scores into a verdict, and a verdict into the platforms that may receive the piece.

Backends disagree and cover different inputs (image vs caption), so scores are merged by taking the
maximum per category: a piece is as risky as the most worried backend says. A category at or above
its threshold rejects the piece; otherwise the sexual score alone picks the tier, because tiers
exist to keep revealing-but-allowed content off platforms with stricter norms.

Human review (``assess``): the policy does not auto-decide a piece when

* **borderline** - a merged score is below its reject threshold but within ``review_margin`` of it
  (``threshold - margin <= score < threshold``): a hair's breadth from rejection is a judgement call;
* **disputed** - a backend that saw everything another backend saw (its modalities are a superset,
  e.g. OpenAI on image + text versus the text rules on text) scores a category at least
  ``disagreement`` lower than the other. When the worried backend would reject, the piece is held as
  ``restricted`` instead of rejected, so nothing is auto-published and a reviewer decides.

Backends listed in ``CategoryScores.hard_reject`` (an optional attribute; OpenAI's ``sexual/minors``)
always reject, whatever the review rules say. Such pieces get the status ``needs_review``.

Platform compatibility: ``platform_verdicts`` says which platforms take each verdict automatically;
``platform_verdicts_from_tiers`` builds it from ``CONTENTFORGE_PLATFORM_TIERS`` (platform -> tiers),
where only ``safe`` and ``suggestive`` may be listed: ``restricted`` goes nowhere automatically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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

AUTO_TIERS: frozenset[Verdict] = frozenset({Verdict.safe, Verdict.suggestive})
"""The only verdicts a platform may be configured to accept without a human."""

ALL_MODALITIES: frozenset[str] = frozenset({"image", "text"})


def platform_verdicts_from_tiers(
    tiers: Mapping[str, Sequence[str]] | None,
    base: Mapping[Verdict, frozenset[Platform]] = DEFAULT_PLATFORM_VERDICTS,
) -> Mapping[Verdict, frozenset[Platform]]:
    """``base`` with each listed platform's accepted tiers replaced; bad names raise ``InvalidInput``."""
    result = {verdict: set(platforms) for verdict, platforms in base.items()}
    for name, accepted in (tiers or {}).items():
        try:
            platform = Platform(name)
        except ValueError:
            raise InvalidInput(
                f"CONTENTFORGE_PLATFORM_TIERS: unknown platform {name!r}; use {[p.value for p in Platform]}"
            ) from None
        if isinstance(accepted, str):
            raise InvalidInput(f"CONTENTFORGE_PLATFORM_TIERS: {name} needs a list of tiers, got {accepted!r}")
        chosen: set[Verdict] = set()
        for tier in accepted:
            verdict = Verdict(tier) if tier in {v.value for v in Verdict} else None
            if verdict not in AUTO_TIERS:
                raise InvalidInput(
                    f"CONTENTFORGE_PLATFORM_TIERS: {name} lists {tier!r}; only 'safe' and 'suggestive' "
                    "can be accepted automatically (restricted pieces always need a human decision)"
                )
            chosen.add(verdict)
        for verdict, platforms in result.items():
            platforms.discard(platform)
            if verdict in chosen:
                platforms.add(platform)
    return MappingProxyType({verdict: frozenset(platforms) for verdict, platforms in result.items()})


@dataclass(frozen=True)
class Assessment:
    """A verdict plus why (if at all) a human must confirm it before the piece is used."""

    verdict: ModerationVerdict
    review_reasons: tuple[str, ...] = ()

    @property
    def needs_review(self) -> bool:
        return bool(self.review_reasons)


@dataclass(frozen=True)
class ModerationPolicy:
    """Thresholds (score at or above rejects), sexual tier bounds and platform compatibility."""

    thresholds: Mapping[str, float]
    suggestive_at: float
    restricted_at: float
    platform_verdicts: Mapping[Verdict, frozenset[Platform]] = field(
        default_factory=lambda: DEFAULT_PLATFORM_VERDICTS
    )
    review_margin: float = 0.0
    """Scores in ``[threshold - review_margin, threshold)`` go to human review (0 disables)."""
    disagreement: float | None = None
    """A better-informed backend this much below another sends the piece to review (None disables)."""

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
        if not 0.0 <= self.review_margin <= 0.5:
            raise InvalidInput(f"moderation review margin must be in [0, 0.5], got {self.review_margin}")
        if self.disagreement is not None and not 0.0 < self.disagreement <= 1.0:
            raise InvalidInput(f"moderation disagreement must be in (0, 1], got {self.disagreement}")
        for verdict in (Verdict.restricted, Verdict.rejected):
            if self.platform_verdicts.get(verdict):
                raise InvalidInput(f"no platform may accept {verdict.value!r} pieces automatically")

    @classmethod
    def from_settings(cls, settings: Settings) -> ModerationPolicy:
        """The policy configured by ``CONTENTFORGE_MODERATION_*``."""
        return cls(
            thresholds={c: float(getattr(settings, f"moderation_{c}")) for c in CATEGORIES},
            suggestive_at=settings.moderation_suggestive,
            restricted_at=settings.moderation_restricted,
            platform_verdicts=platform_verdicts_from_tiers(settings.platform_tiers),
            review_margin=settings.moderation_review_margin,
            disagreement=settings.moderation_disagreement,
        )

    def assess(
        self,
        scores: Sequence[tuple[str, CategoryScores]],
        modalities: Mapping[str, frozenset[str]] | None = None,
    ) -> Assessment:
        """``decide``, then the review rules of the module docstring.

        ``modalities`` maps a backend name to what it looked at (``{"image"}``, ``{"text"}``); a
        backend not listed is taken to have seen both.
        """
        verdict = self.decide(scores)
        seen = {name: frozenset((modalities or {}).get(name, ALL_MODALITIES)) for name, _ in scores}
        hard = {c for _, result in scores for c in getattr(result, "hard_reject", ())}
        review: list[str] = []
        disputed_rejects: list[str] = []
        for category in CATEGORIES:
            threshold, merged = self.thresholds[category], verdict.scores[category]
            if self.review_margin > 0 and threshold - self.review_margin <= merged < threshold:
                review.append(
                    f"borderline: {category} {merged:.2f} within {self.review_margin:.2f} "
                    f"of reject threshold {threshold:.2f}"
                )
            if self.disagreement is None or category in hard:
                continue
            for high_name, high in scores:
                for low_name, low in scores:
                    gap = high.scores[category] - low.scores[category]
                    if low_name == high_name or not seen[low_name] >= seen[high_name]:
                        continue
                    if gap >= self.disagreement:
                        review.append(
                            f"disputed: {category} {high_name} {high.scores[category]:.2f} vs "
                            f"{low_name} {low.scores[category]:.2f} (which saw the same input)"
                        )
                        if high.scores[category] >= threshold:
                            disputed_rejects.append(category)
        if verdict.verdict is Verdict.rejected:
            rejecting = {c for c in CATEGORIES if verdict.scores[c] >= self.thresholds[c]}
            if hard & rejecting or not rejecting <= set(disputed_rejects):
                # A reject that nobody disputes (or that is a hard reject) stands without review.
                return Assessment(verdict)
            verdict = replace_verdict(verdict, Verdict.restricted)
        review = list(dict.fromkeys(review))
        if not review:
            return Assessment(verdict)
        verdict = verdict.model_copy(
            update={"reasons": [f"needs review: {r}" for r in review] + verdict.reasons}
        )
        return Assessment(verdict, tuple(review))

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

    def with_platform_tiers(self, tiers: Mapping[str, Sequence[str]]) -> ModerationPolicy:
        """This policy with ``tiers`` applied on top of its platform compatibility."""
        return replace(self, platform_verdicts=platform_verdicts_from_tiers(tiers, self.platform_verdicts))

    def platform_accepts(self, verdict: Verdict, platform: Platform) -> bool:
        """Whether ``platform`` may receive a piece with ``verdict`` without a human decision."""
        return Platform(platform) in self.platform_verdicts.get(Verdict(verdict), frozenset())

    def accepted_platforms(self, verdict: Verdict) -> tuple[Platform, ...]:
        """The platforms accepting ``verdict``, in ``Platform`` declaration order."""
        return tuple(p for p in Platform if self.platform_accepts(verdict, p))


def replace_verdict(verdict: ModerationVerdict, new: Verdict) -> ModerationVerdict:
    """The same scores and evidence under another verdict, saying so in the reasons."""
    note = f"held as {new.value} instead of {verdict.verdict.value}: the backends disagree"
    return verdict.model_copy(update={"verdict": new, "reasons": [note, *verdict.reasons]})
