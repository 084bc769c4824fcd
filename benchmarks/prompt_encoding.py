"""Prompt encoding per image: compel's own parsing against ContentForge's (``prompt_parsing``).

Plans the demo's batch (the sample persona, 50 pieces, seed 0, the rule-based prompts, as ``make
demo`` plans it) and encodes every piece's prompt and negative prompt as the SDXL backend does
(``CompelForSDXL``, both text encoders) on the tiny random-weight pipeline, one piece after another
in one thread, twice: with compel's parsing (a new parser and four parses per image) and with
``share_parses`` (packrat parsing, one parse per distinct prompt). The text encoders are tiny, so the
figures are almost all parsing: CPU time that every image costs on any device, under the GIL (all
of a process's generation slots wait for it one after another).

    python benchmarks/prompt_encoding.py               # the demo's 50 pieces
    python benchmarks/prompt_encoding.py --pieces 200

Also times one parse of an awkward prompt with and without packrat parsing: 150 words drawn (seed 0)
from a prompt with a weighted phrase, so its parentheses come unbalanced, as a user's typing may.

Prints one JSON object: seconds per image for each way, the embeddings' equality, the prompts' words,
the awkward prompt's parse.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _demo_prompts(pieces: int) -> list[tuple[str, str]]:
    """(prompt, negative prompt) of each piece of the demo's batch, as planning writes them."""
    from contentforge.batch import plan_pieces
    from contentforge.batch_request import BatchRequest, parse_tier_mix
    from contentforge.domain.models import Platform
    from contentforge.personas import sample_persona

    request = BatchRequest(
        persona=sample_persona(),
        num_pieces=pieces,
        platform=Platform("instagram"),
        tier_mix=parse_tier_mix(None),  # the default mix, as the demo's
        seed=0,
    )
    return [(piece.prompt, piece.negative_prompt or "") for piece in plan_pieces(request, "bench")]


AWKWARD_SOURCE = (
    "a cinematic portrait of a young traveler standing on a windswept cliff at golden hour, soft rim "
    "light, detailed skin texture, 85mm lens, shallow depth of field, muted earth tones, film grain, "
    "editorial fashion photography, (sharp focus:1.2), natural pose, wind in hair, dramatic clouds"
)
"""The prompt whose words, drawn at random, make the awkward prompt (``(sharp`` and ``focus:1.2),``
are two of them)."""


def _awkward_parse_seconds(words_drawn: int) -> dict[str, float]:
    """One parse of the awkward prompt by a new compel parser, without then with packrat parsing."""
    import random

    import pyparsing
    from compel.prompt_parser import PromptParser

    rng = random.Random(0)
    words = AWKWARD_SOURCE.split(" ")
    prompt = " ".join(rng.choice(words) for _ in range(words_drawn))
    seconds = {}
    for name, packrat in (("without_packrat_s", False), ("with_packrat_s", True)):
        pyparsing.ParserElement.disable_memoization()
        if packrat:
            pyparsing.ParserElement.enable_packrat()
        parser = PromptParser()
        began = time.perf_counter()
        parser.parse_conjunction(prompt)
        seconds[name] = round(time.perf_counter() - began, 3)
    return seconds


def _encode_all(wrapper: Any, prompts: list[tuple[str, str]]) -> tuple[list[float], list[Any]]:
    seconds, outputs = [], []
    for prompt, negative in prompts:
        began = time.perf_counter()
        outputs.append(wrapper(prompt, negative_prompt=negative))
        seconds.append(time.perf_counter() - began)
    return seconds, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=50)
    parser.add_argument("--awkward-words", type=int, default=150, help="words of the awkward prompt")
    args = parser.parse_args()

    import pyparsing
    import torch
    from compel import CompelForSDXL

    from contentforge.images.prompt_parsing import parse_prompt, share_parses
    from contentforge.images.tiny import build_tiny_sdxl_pipeline

    if args.pieces < 1 or args.awkward_words < 1:
        raise SystemExit("--pieces and --awkward-words must be at least 1")
    awkward = _awkward_parse_seconds(args.awkward_words)
    prompts = _demo_prompts(args.pieces)
    pipe = build_tiny_sdxl_pipeline(0)
    pyparsing.ParserElement.disable_memoization()  # compel's own: no packrat, as in a fresh process
    with torch.inference_mode():
        CompelForSDXL(pipe)("warm up", negative_prompt="")
        compel_s, expected = _encode_all(CompelForSDXL(pipe), prompts)
        parse_prompt.cache_clear()
        shared_s, got = _encode_all(share_parses(CompelForSDXL(pipe)), prompts)
    same = all(
        torch.equal(a.embeds, b.embeds) and torch.equal(a.negative_embeds, b.negative_embeds)
        for a, b in zip(got, expected, strict=True)
    )
    words = [len(prompt.split()) for prompt, _ in prompts]
    print(
        json.dumps(
            {
                "pieces": len(prompts),
                "prompt_words": {"min": min(words), "median": statistics.median(words), "max": max(words)},
                "distinct_negative_prompts": len({negative for _, negative in prompts}),
                "compel_parsing_s_per_image": round(statistics.mean(compel_s), 4),
                "compel_parsing_s_max": round(max(compel_s), 4),
                "shared_parsing_s_per_image": round(statistics.mean(shared_s), 4),
                "shared_parsing_s_max": round(max(shared_s), 4),
                "speedup": round(sum(compel_s) / sum(shared_s), 1),
                "same_embeddings": same,
                "awkward_prompt_one_parse": awkward | {"words": args.awkward_words},
            }
        )
    )


if __name__ == "__main__":
    main()
