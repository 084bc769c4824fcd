"""The schedulers one request may choose, by model family: short names and the diffusers classes.

Why its own module: the request checks (``models.requests``) and the diffusers backend both need the
table, and the backend must not import the request layer (it sits below it). Nothing here imports
diffusers, so the API validates a scheduler name without loading torch.
"""

from __future__ import annotations

from typing import Literal

SD_SCHEDULERS: dict[str, str] = {
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
    "heun": "HeunDiscreteScheduler",
    "unipc": "UniPCMultistepScheduler",
    "pndm": "PNDMScheduler",
}
"""Schedulers of the noise-prediction families (SD1.5, SDXL) by their short name: diffusers classes that
need nothing beyond diffusers itself (no scipy or torchsde) and take the model's own scheduler config."""
FLUX_SCHEDULERS: dict[str, str] = {"flow_match_euler": "FlowMatchEulerDiscreteScheduler"}
"""Flux predicts a flow, not noise: only flow-matching schedulers (with its dynamic shift) fit it."""
SCHEDULERS: dict[str, dict[str, str]] = {
    "sd15": SD_SCHEDULERS,
    "sdxl": SD_SCHEDULERS,
    "flux": FLUX_SCHEDULERS,
}
SCHEDULER_NAMES: tuple[str, ...] = (*SD_SCHEDULERS, *FLUX_SCHEDULERS)
SchedulerName = Literal["euler", "euler_a", "dpmpp_2m", "ddim", "heun", "unipc", "pndm", "flow_match_euler"]
"""The short names a request may use (``SCHEDULER_NAMES``, spelled out for the OpenAPI enum)."""
SCHEDULER_CLASSES: frozenset[str] = frozenset({*SD_SCHEDULERS.values(), *FLUX_SCHEDULERS.values()})
"""The diffusers class names a request (or a replayed record) may carry; nothing else is looked up."""
