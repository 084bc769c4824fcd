"""Where a generation's time went: load, denoising and VAE decode, plus its cost.

Backends return these in ``GeneratedImage.timings`` (strings, as every ``extra`` value) under the keys
below, and the stored record (``GeneratedImage.stored_record``: the piece's ``generation_record`` and the
file's provenance) carries them in ``extra``; ``GenerationRecord.fingerprint`` leaves them out. A backend
records only what applies to it (Replicate cannot split its server time, the fixed-latency benchmark
loads nothing). The images of one micro-batch share its times equally, as they share its seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

LOAD_S = "load_s"
"""Pipeline and LoRA loading this call caused or waited for; 0 when everything was already loaded."""
DENOISE_S = "denoise_s"
"""From the pipeline call to the end of its last denoising step (includes latent preparation)."""
DECODE_S = "decode_s"
"""From the end of the last denoising step to the decoded image (VAE decode and post-processing)."""
COST_USD = "cost_usd"
TIMING_KEYS = (LOAD_S, DENOISE_S, DECODE_S)


def timing_extra(
    *,
    load_s: float | None = None,
    denoise_s: float | None = None,
    decode_s: float | None = None,
    cost_usd: float | None = None,
) -> dict[str, str]:
    """The ``extra`` entries for the values that apply (None ones are left out)."""
    values = {LOAD_S: load_s, DENOISE_S: denoise_s, DECODE_S: decode_s, COST_USD: cost_usd}
    return {
        key: f"{value:.6f}" if key != COST_USD else f"{value:g}"
        for key, value in values.items()
        if value is not None
    }


def mean_timings(records: Iterable[Mapping[str, Any] | None]) -> dict[str, float]:
    """Mean of each timing over the stored records (``generation_record`` dicts) that carry it."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for record in records:
        extra = (record or {}).get("extra") or {}
        for key in TIMING_KEYS:
            raw = extra.get(key)
            if raw in (None, ""):
                continue
            try:
                value = float(raw)
            except (TypeError, ValueError):
                continue
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    return {key: sums[key] / counts[key] for key in TIMING_KEYS if key in counts}
