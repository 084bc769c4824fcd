"""Schemas of the structured answers the text layer asks models for.

They live here, next to the offline engine that answers some of them with rules, so that
``llm_hooks`` and ``llm_prompts`` and the engine share one definition without import cycles.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contentforge.domain.models import HookStyle

IMAGE_PROMPT_MIN_WORDS = 100
IMAGE_PROMPT_MAX_WORDS = 200


class HookDraft(BaseModel):
    """One caption as a model writes it; ``LlmHookWriter`` enforces the platform rules afterwards."""

    model_config = ConfigDict(extra="ignore")

    style: HookStyle
    text: str = Field(min_length=1, description="The hook line: one sentence, no hashtags.")
    call_to_action: str = Field(default="", description="One short line inviting a reaction.")
    hashtags: list[str] = Field(default_factory=list, description="Without '#'.")

    @field_validator("hashtags", mode="before")
    @classmethod
    def _split_string(cls, value: object) -> object:
        return value.replace(",", " ").split() if isinstance(value, str) else value


class HookDrafts(BaseModel):
    """Hooks in distinct styles for one piece."""

    model_config = ConfigDict(extra="ignore")

    hooks: list[HookDraft] = Field(min_length=1, max_length=12)


class ImagePromptDraft(BaseModel):
    """A detailed text-to-image prompt of 100-200 words and optional extra negative terms."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1)
    negative_terms: list[str] = Field(default_factory=list)

    @field_validator("prompt")
    @classmethod
    def _length_in_words(cls, value: str) -> str:
        value = " ".join(value.split())
        words = len(value.split())
        if not IMAGE_PROMPT_MIN_WORDS <= words <= IMAGE_PROMPT_MAX_WORDS:
            raise ValueError(
                f"prompt has {words} words; write {IMAGE_PROMPT_MIN_WORDS} to {IMAGE_PROMPT_MAX_WORDS}"
            )
        return value
