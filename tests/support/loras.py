"""Registry LoRAs for the tests of AUTO mode: a tiny LoRA file entered in the database registry with
the description, tags and trigger word the recommender matches prompts against."""

from __future__ import annotations

from pathlib import Path

from contentforge.db.registry import InstalledModel, ModelRegistry


def register_lora(
    registry: ModelRegistry,
    name: str,
    path: Path,
    *,
    trigger: str,
    tags: tuple[str, ...],
    description: str,
    weight: float = 0.6,
) -> None:
    """Enter the SDXL LoRA at ``path`` as ``name`` (as ``contentforge models install`` would)."""
    registry.add(
        InstalledModel(
            name=name,
            kind="lora",
            source="local",
            source_ref=str(path),
            path=str(path),
            family="sdxl",
            family_reason="test",
            sha256="0" * 64,
            size_bytes=path.stat().st_size,
            trigger_words=(trigger,),
            recommended_weight=weight,
            tags=tags,
            description=description,
        )
    )


def install_tiny_lora(folder: Path, name: str, *, trigger: str, description: str, seed: int = 2) -> None:
    """Build a tiny SDXL LoRA in ``folder`` and install it through ``contentforge models install``."""
    from typer.testing import CliRunner

    from contentforge.images.tiny import build_tiny_lora, build_tiny_sdxl_pipeline
    from contentforge_cli.main import app

    lora = build_tiny_lora(build_tiny_sdxl_pipeline(0), folder / f"{name}.safetensors", seed=seed)
    named = ["--hub", "local", "--kind", "lora", "--name", name, "--trigger", trigger]
    done = CliRunner().invoke(app, ["models", "install", str(lora), *named, "--description", description])
    assert done.exit_code == 0, done.output
