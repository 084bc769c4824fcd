"""``contentforge models``: search the hubs, install verified models and LoRAs, list, verify, prune."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from contentforge_cli import context
from contentforge_cli.context import console

if TYPE_CHECKING:
    from contentforge.db.registry import ModelRegistry

app = typer.Typer(help="Models and LoRAs: hub search, verified installs, the registry.", no_args_is_help=True)


def _registry() -> ModelRegistry:
    from contentforge.db.registry import ModelRegistry

    return ModelRegistry(context.services().sessions)


@app.command("search")
def models_search(
    query: Annotated[str, typer.Argument(help="Words to search for.")],
    hub: Annotated[str, typer.Option(help="civitai or huggingface.")] = "civitai",
    kind: Annotated[str | None, typer.Option(help="checkpoint or lora.")] = None,
    base_model: Annotated[
        str | None, typer.Option(help="e.g. 'SDXL 1.0' (CivitAI) or a repo id (HF).")
    ] = None,
    sort: Annotated[str, typer.Option(help="Hugging Face: downloads, likes, last_modified.")] = "downloads",
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """Search a hub; NSFW-flagged models are hidden (CONTENTFORGE_MODELS_SHOW_NSFW shows them)."""
    from contentforge.models import service

    found = service.search(
        context.settings(), hub, query, kind=kind, base_model=base_model, limit=limit, sort=sort
    )
    for model in found:
        console.print(model.line(), highlight=False)
    console.print(f"{len(found)} model(s); install one with: contentforge models install --hub {hub} REF")


@app.command("install")
def models_install(
    ref: Annotated[str, typer.Argument(help="CivitAI version id, Hugging Face repo id, or a local path.")],
    hub: Annotated[str, typer.Option(help="civitai, huggingface or local.")] = "civitai",
    name: Annotated[str | None, typer.Option(help="Registry name (default: from the hub's name).")] = None,
    kind: Annotated[str | None, typer.Option(help="checkpoint or lora (default: what the hub says).")] = None,
    trigger: Annotated[list[str] | None, typer.Option(help="Trigger word (local installs).")] = None,
    description: Annotated[str, typer.Option(help="What it does (local installs).")] = "",
    tag: Annotated[list[str] | None, typer.Option(help="Tag (local installs).")] = None,
) -> None:
    """Download, verify (SHA-256), probe the family and register a model; pickles and NSFW refused."""
    from contentforge.errors import InvalidInput
    from contentforge.models import service
    from contentforge.models.install import install_local

    if hub == "local":
        if kind not in ("checkpoint", "lora"):
            raise InvalidInput("a local install needs --kind checkpoint or --kind lora")
        if not name:
            raise InvalidInput("a local install needs --name")
        installed = install_local(
            Path(ref),
            kind=kind,  # type: ignore[arg-type]
            registry=_registry(),
            name=name,
            trigger_words=tuple(trigger or ()),
            description=description,
            tags=tuple(tag or ()),
        )
    else:
        request = service.InstallRequest.checked(hub, ref, name, kind)
        installed = service.install(context.settings(), _registry(), request)
    console.print(f"installed {installed.line()}", highlight=False)
    console.print(f"family {installed.family} ({installed.family_reason}); sha256 {installed.sha256}")


@app.command("list")
def models_list(
    kind: Annotated[str | None, typer.Option(help="checkpoint or lora.")] = None,
    family: Annotated[str | None, typer.Option(help="sd15, sdxl or flux.")] = None,
) -> None:
    """The registry: name, kind, family, size, source, last use."""
    table = Table("name", "kind", "family", "size MB", "source", "trigger words", "last used")
    models = _registry().list_models(kind=kind, family=family)
    for model in models:
        table.add_row(
            model.name,
            model.kind,
            model.family,
            f"{model.size_bytes / 2**20:.1f}",
            f"{model.source}:{model.source_ref}",
            ", ".join(model.trigger_words),
            model.last_used_at.isoformat(timespec="seconds") if model.last_used_at else "never",
        )
    console.print(table)
    console.print(f"{len(models)} model(s)")


@app.command("verify")
def models_verify(name: Annotated[str | None, typer.Argument(help="One model; default all.")] = None) -> None:
    """Re-hash installed files against their registered SHA-256; exit 1 if any changed or went missing."""
    from contentforge.errors import InvalidInput
    from contentforge.models.install import verify

    registry = _registry()
    if name is None:
        models = registry.list_models()
    else:
        one = registry.get(name)
        if one is None:
            raise InvalidInput(f"no installed model named {name!r} (see: contentforge models list)")
        models = [one]
    problems = [p for p in (verify(m) for m in models) if p is not None]
    for problem in problems:
        context.warn(problem)
    console.print(f"{len(models) - len(problems)} of {len(models)} model(s) verified")
    if problems:
        raise typer.Exit(code=1)


@app.command("remove")
def models_remove(name: Annotated[str, typer.Argument(help="Registry name.")]) -> None:
    """Remove a model from the registry and delete its downloaded files (local files are kept)."""
    from contentforge.errors import InvalidInput
    from contentforge.models.install import delete_files
    from contentforge.models.service import models_in_use

    registry = _registry()
    settings = context.settings()
    users = models_in_use(registry.list_models(), context.repository().list_personas(), settings)
    if name in users:
        raise InvalidInput(f"{name} is used by {users[name]}; change that first")
    removed = registry.remove(name)
    deleted = delete_files(removed, settings.data_dir)
    console.print(f"removed {name}" + (" and its files" if deleted else " (its local files are kept)"))


@app.command("prune")
def models_prune(
    budget_mb: Annotated[int, typer.Option(min=0, help="Keep at most this many MB of models.")],
    dry_run: Annotated[bool, typer.Option(help="Only say what would be removed.")] = False,
) -> None:
    """Remove least recently used models until the rest fit the budget; never one a persona uses."""
    from contentforge.db.registry import prune_plan
    from contentforge.models.install import delete_files
    from contentforge.models.service import models_in_use

    registry = _registry()
    settings = context.settings()
    models = registry.list_models()
    users = models_in_use(models, context.repository().list_personas(), settings)
    plan = prune_plan(models, budget_mb * 2**20, set(users))
    for model in plan:
        if not dry_run:
            registry.remove(model.name)
            delete_files(model, settings.data_dir)
        console.print(f"{'would remove' if dry_run else 'removed'} {model.line()}", highlight=False)
    left = sum(m.size_bytes for m in models) - sum(m.size_bytes for m in plan)
    console.print(f"{len(plan)} model(s) pruned; {left / 2**20:.1f} MB left (kept in use: {len(users)})")


@app.command("rate")
def models_rate(
    piece: Annotated[str, typer.Argument(help="Piece id.")],
    rating: Annotated[int | None, typer.Option(min=1, max=5, help="1 (bad) to 5 (great).")] = None,
    approve: Annotated[bool | None, typer.Option("--approve/--reject", help="The review decision.")] = None,
) -> None:
    """Feed a piece's rating or review decision back to its LoRAs and parameters (used next time)."""
    from contentforge.db import RecordNotFound
    from contentforge.errors import InvalidInput
    from contentforge.models.feedback import record_piece_feedback
    from contentforge.validation import check_piece_id

    check_piece_id(piece)
    row = context.repository().get_piece(piece)
    if row is None:
        raise RecordNotFound(f"no piece with id {piece!r}")
    if row.record is None:
        raise InvalidInput(f"piece {piece} has no generation record yet")
    updated = record_piece_feedback(_registry(), row.record, approved=approve, rating=rating)
    console.print(f"{piece}: feedback recorded for {', '.join(updated)}", highlight=False)


@app.command("learned")
def models_learned() -> None:
    """What feedback taught: per LoRA and per parameter value, approvals, rejections, ratings, score."""
    registry = _registry()
    table = Table("subject", "key", "approved", "rejected", "ratings", "mean rating", "score")
    for subject in ("lora", "param"):
        for key, score in sorted(registry.feedback(subject).items()):
            mean = f"{score.rating_total / score.rating_count:.1f}" if score.rating_count else "-"
            table.add_row(
                subject, key, str(score.approvals), str(score.rejections), str(score.rating_count), mean,
                f"{score.value():.2f}",
            )  # fmt: skip
    console.print(table)
