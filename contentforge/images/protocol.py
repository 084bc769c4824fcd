"""The contract between batch code and image generators.

Batch code only sees ``ImageRequest`` -> ``GeneratedImage``; which engine runs (a real SDXL model, the
random-weight tiny pipeline or the fixed-latency benchmark) is decided by configuration in
``contentforge.images.factory``. Nothing here imports torch, so the contract stays cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from contentforge.domain import GenerationRecord, LoraSpec

SIZE_MULTIPLE = 8
"""SDXL's VAE downsamples by 8, so widths and heights must be multiples of 8."""


class ImageRequest(BaseModel):
    """One image to generate; everything that decides its pixels (with the backend's model).

    Trigger words of the LoRAs are already in ``prompt``: the request is exactly what the model sees.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1)
    negative_prompt: str = ""
    seed: int = Field(ge=0, lt=2**63)
    steps: int = Field(ge=1, le=150)
    guidance_scale: float = Field(ge=0.0, le=30.0)
    width: int = Field(ge=64, le=2048)
    height: int = Field(ge=64, le=2048)
    loras: tuple[LoraSpec, ...] = ()

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_eight(cls, value: int) -> int:
        if value % SIZE_MULTIPLE:
            raise ValueError(f"must be a multiple of {SIZE_MULTIPLE} (SDXL's VAE scale), got {value}")
        return value


@dataclass
class GeneratedImage:
    """A generated image with the record that regenerates it, its wall time and its cost.

    ``timings`` holds what this run measured (``contentforge.images.timings``: load, denoise and decode
    seconds, cost); it stays out of ``record``, so the same request gives an equal record, and goes into
    the stored record's ``extra`` through ``stored_record``.
    """

    image: Image.Image
    record: GenerationRecord
    seconds: float
    cost_usd: float
    timings: dict[str, str] = field(default_factory=dict)

    def stored_record(self) -> GenerationRecord:
        """The record as stored with the piece and in the file: ``record`` plus this run's timings."""
        if not self.timings:
            return self.record
        return self.record.model_copy(update={"extra": {**self.record.extra, **self.timings}})


@runtime_checkable
class ImageBackend(Protocol):
    """Anything that turns an ``ImageRequest`` into pixels.

    ``generate`` must be safe to call from several threads at once: the orchestrator runs up to
    ``generation_slots`` image tasks concurrently in one worker process.
    """

    name: str

    def describe(self) -> str:
        """One line: which backend, model and device, and why it was chosen."""
        ...

    def generate(self, request: ImageRequest) -> GeneratedImage:
        """Generate one image; the same request always gives the same pixels on the same setup."""
        ...
