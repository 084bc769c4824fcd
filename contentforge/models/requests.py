"""Per-request generation control: parameters checked per model family, replays and variations of a piece.

``GenerationParams`` is what one request may set (steps, guidance, size, scheduler, negative prompt,
seed, and the prompt itself); ``checked_params`` refuses what the family cannot do in one line, before
any model loads: sizes are multiples of 8 within the family's limits, steps 1-150, guidance 0-30, a
scheduler the family can run (Flux is a flow-matching model: only flow-matching schedulers), and Flux
takes no negative prompt (it is guidance-distilled). ``replay_request`` turns a stored generation record back
into the exact request; ``variation_requests`` derives N requests from it, varying one thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contentforge.config import Settings
from contentforge.domain import GenerationRecord, LoraSpec
from contentforge.errors import InvalidInput
from contentforge.images.protocol import SIZE_MULTIPLE, ImageRequest
from contentforge.images.schedulers import SCHEDULER_CLASSES, SCHEDULERS, SD_SCHEDULERS

SIZE_LIMITS: dict[str, tuple[int, int]] = {"sd15": (64, 1024), "sdxl": (64, 2048), "flux": (64, 2048)}
"""Smallest and largest side per family (64: the tiny offline pipelines; real models want far more)."""
VARY: tuple[str, ...] = ("seed", "guidance", "lora-weight", "prompt")
VariedBy = Literal["seed", "guidance", "lora-weight", "prompt"]
PROMPT_VARIATIONS = (
    "close-up",
    "wide shot",
    "from a low angle",
    "soft window light",
    "high contrast",
    "overhead view",
)
"""Fixed, so the same variation request always gives the same prompts."""
MAX_VARIATIONS = 16


class GenerationParams(BaseModel):
    """What one request may set; anything left out comes from the settings (or the optimizer in AUTO)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str | None = Field(default=None, min_length=1, max_length=4000)
    negative_prompt: str | None = Field(default=None, max_length=2000)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    steps: int | None = Field(default=None, ge=1, le=150)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=30.0)
    width: int | None = None
    height: int | None = None
    scheduler: str | None = Field(default=None, max_length=120)
    """A short name (``euler_a``) or, from a stored record, the diffusers class name; ``checked_params``
    turns it into the class name."""


def scheduler_class(family: str, name: str) -> str:
    """The diffusers class of scheduler ``name`` (short or class name) for ``family``, or one line why not."""
    known = SCHEDULERS.get(family, SD_SCHEDULERS)
    if name in known:
        return known[name]
    if name in known.values():
        return name
    raise InvalidInput(f"scheduler {name!r}: {family} models take {', '.join(known)}")


def checked_params(family: str, **values: object) -> GenerationParams:
    """The parameters, or one ``InvalidInput`` line naming the first one the family cannot take."""
    try:
        params = GenerationParams.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "request"
        raise InvalidInput(f"{where}: {error['msg']}") from exc
    low, high = SIZE_LIMITS.get(family, (64, 2048))
    for name in ("width", "height"):
        value = getattr(params, name)
        if value is None:
            continue
        if value % SIZE_MULTIPLE:
            raise InvalidInput(f"{name} {value}: must be a multiple of {SIZE_MULTIPLE} (the VAE's scale)")
        if not low <= value <= high:
            raise InvalidInput(f"{name} {value}: {family} models take {low}-{high} px")
    if family == "flux" and params.negative_prompt:
        raise InvalidInput("negative prompt: Flux has none (it is guidance-distilled); leave it out")
    if params.scheduler is not None:
        params = params.model_copy(update={"scheduler": scheduler_class(family, params.scheduler)})
    return params


def checked_for_settings(settings: Settings, **values: object) -> GenerationParams:
    """``checked_params`` for the configured image backend's family, learned without loading it.

    A scheduler is refused for backends that do not run diffusers here (Replicate, the benchmark's
    fixed-latency backend): they could not honour it, and the record would claim what did not happen.
    """
    from contentforge.images.loras import _configured_family

    family = _configured_family(settings)
    if family is None and values.get("scheduler") is not None:
        raise InvalidInput(
            f"scheduler: the {settings.image_profile} image profile picks its own; use the tiny or model "
            "profile to choose one"
        )
    return checked_params(family or "sdxl", **values)


def apply_params(request: ImageRequest, params: GenerationParams) -> ImageRequest:
    """``request`` with every parameter the user set replacing the default."""
    changes = {k: v for k, v in params.model_dump().items() if v is not None}
    return request.model_copy(update=changes) if changes else request


def replay_request(record: GenerationRecord) -> ImageRequest:
    """The request that produced ``record``: same prompt, seed, parameters and LoRAs at their scales."""
    return ImageRequest(
        prompt=record.prompt,
        negative_prompt=record.negative_prompt,
        seed=record.seed,
        steps=record.steps,
        guidance_scale=record.guidance_scale,
        width=record.width,
        height=record.height,
        # The class that ran, when it is one a request may name (records of other backends have none).
        scheduler=record.scheduler if record.scheduler in SCHEDULER_CLASSES else None,
        loras=tuple(
            LoraSpec(source=lora.source, weight_name=lora.weight_name, scale=lora.scale)
            for lora in record.loras
        ),
    )


@dataclass(frozen=True)
class Variation:
    request: ImageRequest
    label: str
    """What changed, e.g. ``seed 43`` or ``guidance 6.5``."""


def variation_requests(record: GenerationRecord, vary: str, count: int) -> list[Variation]:
    """``count`` requests derived from ``record``, each changing only ``vary``."""
    if vary not in VARY:
        raise InvalidInput(f"--vary {vary!r}: use one of {', '.join(VARY)}")
    if not 1 <= count <= MAX_VARIATIONS:
        raise InvalidInput(f"-n {count}: make 1 to {MAX_VARIATIONS} variations")
    base = replay_request(record)
    if vary == "lora-weight" and not base.loras:
        raise InvalidInput("--vary lora-weight: the piece was generated without a LoRA")
    out = []
    for i in range(1, count + 1):
        if vary == "seed":
            seed = (base.seed + i) % 2**63
            out.append(Variation(base.model_copy(update={"seed": seed}), f"seed {seed}"))
        elif vary == "guidance":
            step = 0.75 * ((i + 1) // 2) * (1 if i % 2 else -1)  # +0.75, -0.75, +1.5, -1.5 …
            guidance = round(min(30.0, max(0.0, base.guidance_scale + step)), 2)
            out.append(
                Variation(base.model_copy(update={"guidance_scale": guidance}), f"guidance {guidance:g}")
            )
        elif vary == "lora-weight":
            factor = 1 + 0.2 * ((i + 1) // 2) * (1 if i % 2 else -1)
            loras = tuple(
                lora.model_copy(update={"scale": round(max(-4.0, min(4.0, lora.scale * factor)), 3)})
                for lora in base.loras
            )
            label = "LoRA weights " + ", ".join(f"{lora.scale:g}" for lora in loras)
            out.append(Variation(base.model_copy(update={"loras": loras}), label))
        else:
            phrase = PROMPT_VARIATIONS[(i - 1) % len(PROMPT_VARIATIONS)]
            out.append(
                Variation(
                    base.model_copy(update={"prompt": f"{base.prompt}, {phrase}"}), f"prompt + '{phrase}'"
                )
            )
    return out
