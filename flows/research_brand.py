"""Research a brand: fetch its website (and a few same-site pages), read uploaded documents, extract a
``BrandDNA`` of 36 sourced fields, save it on the brand and show it as an artifact.

Pages are fetched within limits (size, time, redirects, robots.txt; no private addresses); page
text is data, never instructions. With a model in CONTENTFORGE_TEXT_PROVIDERS its values are
checked against the cited text; offline, a heuristic extractor fills what it can.

    python flows/research_brand.py "Trailbean" https://trailbean.example/ [brief.md ...]
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from contentforge.domain.models import slugify
from contentforge.domain.strategy import DNA_FIELDS, BrandDNA
from tasks.run_hooks import note_step_end
from tasks.strategy import research_dna, save_dna


def dna_markdown(dna: BrandDNA) -> str:
    known = len(dna.known_fields())
    lines = [
        f"# Brand DNA: {dna.brand}",
        "",
        f"{known} of {len(DNA_FIELDS)} fields found · extractor `{dna.extractor}`"
        + (f" · prompt `{dna.prompt_version}`" if dna.prompt_version else ""),
        "",
        "| field | value | how | source |",
        "|---|---|---|---|",
    ]
    for name in DNA_FIELDS:
        field = dna.field(name)
        value = field.display().replace("|", "\\|").replace("\n", " ")[:160]
        lines.append(f"| {name} | {value} | {field.method or ''} | {field.source or ''} |")
    if dna.warnings:
        lines += ["", "## Warnings", "", *(f"- {w}" for w in dna.warnings)]
    return "\n".join(lines)


@flow(name="research-brand", on_cancellation=[note_step_end], on_crashed=[note_step_end])
def research_brand(
    name: str, urls: list[str] | None = None, documents: list[str] | None = None
) -> dict[str, Any]:
    """Extract and save the DNA of brand ``name``; returns its id and which fields were found."""
    logger = get_run_logger()
    urls, documents = list(urls or []), list(documents or [])
    data = research_dna(name, urls, documents)
    dna = BrandDNA.model_validate(data)
    brand_id = save_dna(name, data, urls[0] if urls else None)
    create_markdown_artifact(
        dna_markdown(dna), key=f"brand-dna-{slugify(name)[:40]}", description="Brand DNA"
    )
    logger.info(
        "brand %s: %d of %d DNA fields found (%s); %d warning(s)",
        brand_id, len(dna.known_fields()), len(DNA_FIELDS), dna.extractor, len(dna.warnings),
    )  # fmt: skip
    return {
        "brand_id": brand_id,
        "known": dna.known_fields(),
        "unknown": dna.unknown_fields(),
        "extractor": dna.extractor,
        "warnings": dna.warnings,
        "sources": dna.sources,
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    print(
        research_brand(args[0], [a for a in args[1:] if "://" in a], [a for a in args[1:] if "://" not in a])
    )
