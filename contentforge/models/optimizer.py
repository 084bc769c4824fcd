"""The parameter optimizer: steps, guidance, size, scheduler and memory strategy for one generation.

Inputs: the model family's known-good ranges (``FAMILY_RANGES``, from the model cards and diffusers'
docs: SD1.5 at 512², SDXL and Flux at 1024²), a priority (speed picks the low end, balanced the
middle, quality the high end), the target platform's preferred aspect (``storage/media_rules.yaml``),
the free accelerator memory, and learned feedback per parameter value (``steps:28``).

Learned feedback moves a choice only with evidence: another value of the range must have at least
``MIN_TRIALS`` reviews and a score ``LEARNED_MARGIN`` above the default's, and the reason says so.
Every choice carries its reason; ``ParameterChoice.line`` is the one-line explanation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from contentforge.db.registry import FeedbackScore
from contentforge.errors import InvalidInput

Priority = Literal["speed", "balanced", "quality"]
PRIORITIES: tuple[str, ...] = ("speed", "balanced", "quality")
MIN_TRIALS = 3
LEARNED_MARGIN = 0.15
SIZE_STEP = 64
SIZE_MULTIPLE = 8
SMALL_AREA = 512 * 512
"""Sizes are rounded to 64 px: every family's latent grid and SDXL's training buckets fit it."""


@dataclass(frozen=True)
class FamilyRange:
    label: str
    steps: tuple[int, int, int]
    guidance: tuple[float, float, float]
    pixels: int
    """The area the family was trained at (width × height)."""
    max_side: int
    scheduler: str
    model_bytes: int
    """Rough half-precision weight size, to judge whether it fits the free memory."""


FAMILY_RANGES: dict[str, FamilyRange] = {
    "sd15": FamilyRange(
        "SD1.5", (20, 28, 40), (6.0, 7.0, 8.5), 512 * 512, 1024, "DPMSolverMultistepScheduler", 2 << 30
    ),
    "sdxl": FamilyRange(
        "SDXL", (20, 30, 40), (4.5, 6.0, 7.5), 1024 * 1024, 2048, "EulerDiscreteScheduler", 7 << 30
    ),
    "flux": FamilyRange(
        "Flux", (20, 28, 40), (3.0, 3.5, 4.5), 1024 * 1024, 2048, "FlowMatchEulerDiscreteScheduler", 24 << 30
    ),
}
PRIORITY_INDEX = {"speed": 0, "balanced": 1, "quality": 2}
SPEED_AREA = 0.75
"""Speed priority renders 75% of the family's area; quality and balanced the full area."""


@dataclass(frozen=True)
class ParameterChoice:
    steps: int
    guidance_scale: float
    width: int
    height: int
    scheduler: str
    memory_strategy: str
    reasons: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return ", ".join(
            [
                f"{self.steps} steps ({self.reasons['steps']})",
                f"guidance {self.guidance_scale:g} ({self.reasons['guidance']})",
                f"{self.width}x{self.height} ({self.reasons['size']})",
                f"memory {self.memory_strategy} ({self.reasons['memory']})",
            ]
        )


def snap(value: float, step: int = SIZE_STEP) -> int:
    return max(step, round(value / step) * step)


def optimize(
    family: str,
    priority: str = "balanced",
    *,
    aspect: float = 1.0,
    aspect_reason: str = "square",
    free_bytes: int | None = None,
    feedback: dict[str, FeedbackScore] | None = None,
    pixels: int | None = None,
    steps_range: tuple[int, int, int] | None = None,
) -> ParameterChoice:
    """The parameters for ``family`` at ``priority``; ``pixels``/``steps_range`` override the family's
    (the tiny offline pipelines run at 128² and a few steps)."""
    if family not in FAMILY_RANGES:
        raise InvalidInput(f"unknown model family {family!r}; use sd15, sdxl or flux")
    if priority not in PRIORITIES:
        raise InvalidInput(f"priority {priority!r}: use speed, balanced or quality")
    known = FAMILY_RANGES[family]
    index = PRIORITY_INDEX[priority]
    step_values = steps_range or known.steps
    feedback = feedback or {}
    steps, steps_reason = _learned(
        "steps",
        step_values,
        index,
        feedback,
        f"{priority} priority, {known.label} range {step_values[0]}-{step_values[2]}",
    )
    guidance, guidance_reason = _learned(
        "guidance",
        known.guidance,
        1,
        feedback,
        f"{known.label} default, range {known.guidance[0]:g}-{known.guidance[2]:g}",
    )
    area = float(pixels or known.pixels) * (SPEED_AREA if priority == "speed" else 1.0)
    memory, memory_reason = "full", "no accelerator memory reading"
    if free_bytes is not None:
        if free_bytes >= known.model_bytes * 1.5:
            memory, memory_reason = "full_gpu", f"{free_bytes / 2**30:.1f} GB free"
        else:
            memory = "model_cpu_offload"
            memory_reason = (
                f"{free_bytes / 2**30:.1f} GB free < 1.5 x {known.model_bytes / 2**30:.0f} GB weights"
            )
            area *= SPEED_AREA
    step = SIZE_STEP if area >= SMALL_AREA else SIZE_MULTIPLE  # tiny pipelines: 64 px steps are too coarse
    width = snap(math.sqrt(area * aspect), step)
    height = snap(math.sqrt(area / aspect), step)
    width, height = min(width, known.max_side), min(height, known.max_side)
    size_reason = f"{aspect_reason}, {'configured' if pixels else known.label} area" + (
        ", reduced for speed" if priority == "speed" else ""
    )
    return ParameterChoice(
        steps=int(steps),
        guidance_scale=float(guidance),
        width=width,
        height=height,
        scheduler=known.scheduler,
        memory_strategy=memory,
        reasons={
            "steps": steps_reason,
            "guidance": guidance_reason,
            "size": size_reason,
            "memory": memory_reason,
        },
    )


def _learned(
    name: str,
    values: tuple[float, float, float] | tuple[int, int, int],
    index: int,
    feedback: dict[str, FeedbackScore],
    reason: str,
) -> tuple[float, str]:
    """The default value, or a neighbour the reviews clearly preferred (with at least MIN_TRIALS)."""
    default = values[index]
    default_score = feedback.get(f"{name}:{default:g}", FeedbackScore()).value()
    best, best_score = default, default_score
    for value in values:
        score = feedback.get(f"{name}:{value:g}")
        if score is None or score.trials < MIN_TRIALS:
            continue
        if score.value() >= best_score + LEARNED_MARGIN:
            best, best_score = value, score.value()
    if best != default:
        return best, f"learned: reviews prefer {best:g} ({best_score:.2f} vs {default_score:.2f})"
    return default, reason


def platform_aspect(platform: str | None) -> tuple[float, str]:
    """The platform's preferred width/height from its media rules (square when it has none)."""
    if not platform:
        return 1.0, "square"
    from contentforge.storage.renditions import rules_for

    rules = rules_for(platform)
    preferred = rules.aspect.preferred or 1.0
    return preferred, f"{platform} prefers aspect {preferred:g}"
