"""``contentforge personas``: create (from a file, or at random from the niche catalog) and list personas."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from contentforge_cli import context
from contentforge_cli.context import console

app = typer.Typer(help="Create and list personas.", no_args_is_help=True)


@app.command("add")
def personas_add(path: Annotated[Path, typer.Argument(help="A persona YAML or JSON file.")]) -> None:
    """Create or update a persona from a file."""
    from contentforge.personas import load_persona_file

    persona = load_persona_file(path)
    context.repository().upsert_persona(persona)
    console.print(f"saved persona {persona.id} ({persona.name})")


@app.command("list")
def personas_list() -> None:
    """List the saved personas."""
    table = Table("id", "name", "niche", "platforms", "LoRA")
    for persona in context.repository().list_personas():
        lora = f"{persona.lora.source} ({persona.trigger_word}, {persona.lora.scale})" if persona.lora else ""
        table.add_row(persona.id, persona.name, persona.niche, ", ".join(persona.platforms), lora)
    console.print(table)


@app.command("random")
def personas_random(
    type_hint: Annotated[str, typer.Option("--type", "-t", help="fitness, tech, fashion, food, travel...")],
    seed: Annotated[int | None, typer.Option(help="Same seed, same persona.")] = None,
    save: Annotated[bool, typer.Option("--save", help="Save it as a persona.")] = False,
) -> None:
    """Create a random persona of a type (offline rules from the niche catalog); print it as YAML."""
    import yaml

    from contentforge.strategy.personas import random_persona

    persona = random_persona(type_hint, seed=seed).to_persona()
    if save:
        context.repository().upsert_persona(persona)
    console.print(
        yaml.safe_dump(persona.model_dump(mode="json", exclude_none=True), sort_keys=False), highlight=False
    )
    if save:
        console.print(f"saved persona {persona.id} ({persona.name})")
