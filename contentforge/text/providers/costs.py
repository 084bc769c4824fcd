"""Write a text call's cost into the batch cost ledger (never the key: only model, tokens, version)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contentforge.text.providers.protocol import StructuredResult, TextResult

if TYPE_CHECKING:
    from contentforge.db.repository import Repository


def cost_detail(result: TextResult, prompt_version: str | None = None) -> dict[str, object]:
    """The ``detail`` of a cost entry: model, tokens, prompt version, calls, latency, fallbacks."""
    return {
        "model": result.model,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "tokens": result.input_tokens + result.output_tokens,
        "prompt_version": prompt_version or result.prompt_version,
        "calls": result.calls,
        "latency_s": round(result.latency_s, 3),
        "fallbacks": list(result.fallbacks),
    }


def record_text_cost(
    repo: Repository,
    batch_id: str,
    answer: TextResult | StructuredResult,
    *,
    piece_id: str | None = None,
    charge_key: str | None = None,
) -> None:
    """One ``kind="text"`` cost entry for ``answer`` (a plain or structured result).

    ``charge_key`` names the call, so recording it again (a retry of the recording) adds nothing.
    """
    if isinstance(answer, StructuredResult):
        result, version = answer.result, answer.prompt_version
    else:
        result, version = answer, answer.prompt_version
    repo.add_cost(
        batch_id,
        kind="text",
        provider=result.provider,
        amount_usd=result.cost_usd,
        piece_id=piece_id,
        detail=cost_detail(result, version),
        charge_key=charge_key,
    )
