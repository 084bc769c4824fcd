"""Domain models shared by every layer (pydantic, no I/O)."""

from contentforge.domain.models import (
    PLATFORMS,
    GenerationRecord,
    Hook,
    HookStyle,
    LoraRef,
    LoraSpec,
    ModerationVerdict,
    Persona,
    PieceStatus,
    Platform,
    Template,
    TemplateTier,
    TierMix,
    Verdict,
)

__all__ = [
    "PLATFORMS",
    "GenerationRecord",
    "Hook",
    "HookStyle",
    "LoraRef",
    "LoraSpec",
    "ModerationVerdict",
    "Persona",
    "PieceStatus",
    "Platform",
    "Template",
    "TemplateTier",
    "TierMix",
    "Verdict",
]
