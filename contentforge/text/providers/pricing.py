"""Cost of a call from its token counts and a per-model price table (USD per 1M tokens)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

log = logging.getLogger(__name__)
_warned: set[str] = set()

Prices = Mapping[str, tuple[float, float]]
"""model -> (input USD per 1M tokens, output USD per 1M tokens)."""


def price_for(model: str, prices: Prices) -> tuple[float, float] | None:
    """The exact model's price, else the longest configured prefix (``claude-haiku-4-5-20251001``)."""
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name)]
    return prices[max(matches, key=len)] if matches else None


def cost_usd(model: str, input_tokens: int, output_tokens: int, prices: Prices) -> float:
    """USD for one call; 0.0 (logged once per model) when the model has no configured price."""
    price = price_for(model, prices)
    if price is None:
        if model not in _warned:
            _warned.add(model)
            log.warning(
                "no price configured for text model %r; its calls are recorded at $0 "
                "(set CONTENTFORGE_TEXT_PRICES)",
                model,
            )
        return 0.0
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000
