"""What a hub says about a model, in one shape for Hugging Face and CivitAI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ModelKind = Literal["checkpoint", "lora"]
HubName = Literal["huggingface", "civitai", "local"]


@dataclass(frozen=True)
class HubFile:
    """One downloadable file; ``sha256`` and ``size`` as the hub announces them (None when it does not)."""

    name: str
    url: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class HubModel:
    """A model (one version of it, for CivitAI) as a hub describes it.

    ``base_model`` is the hub's own label (``SDXL 1.0``, ``diffusers:StableDiffusionXLPipeline``); it is
    a hint for search only: the family the registry keeps is probed from the downloaded file.
    """

    hub: HubName
    ref: str
    """Hugging Face repo id, or the CivitAI model version id."""
    name: str
    kind: ModelKind
    base_model: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    trigger_words: tuple[str, ...] = ()
    licence: str = ""
    rating: float | None = None
    """The hub's rating normalised to 0-1 (CivitAI stars / 5, thumbs-up share; HF likes are not a rating)."""
    downloads: int = 0
    nsfw: bool = False
    files: tuple[HubFile, ...] = field(default_factory=tuple)

    def line(self) -> str:
        """One line for a search listing."""
        words = f" [{', '.join(self.trigger_words)}]" if self.trigger_words else ""
        return f"{self.hub}:{self.ref}  {self.kind}  {self.base_model or '?'}  {self.name}{words}"
