"""Batches and what they made: demo, produce, templates, pieces, stats, verify and costs.

Settings and the batch request are validated before any server starts or model loads, so bad input
costs nothing.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from contentforge.config import Settings
from contentforge.db.rows import BatchStats
from contentforge.errors import BatchBusy
from contentforge_cli import context
from contentforge_cli.context import console, fail

app = typer.Typer()


def _run_batch(settings: Settings, **params: Any) -> dict[str, Any]:
    """Run the batch flow on the server, showing a progress bar fed from the database."""
    from contentforge.batch import validate_batch_request
    from contentforge.fair_share import priority_rank
    from contentforge_cli.runtime import connect

    priority_rank(params.get("priority") or "normal")  # an unknown priority: one line, nothing started
    repo = context.repository()
    # Validate before the server starts or any model loads: bad input costs nothing. This checks
    # the batch id too (pattern, owner, piece ids) and saves a persona file only once all is valid.
    request = validate_batch_request(
        repo,
        settings,
        **{k: params.get(k) for k in ("persona", "num_pieces", "platform", "tier_mix", "seed", "batch_id")},
        mode=params.get("mode") or "manual",
    )
    params = {**params, "platform": request.platform.value, "tier_mix": request.tier_mix.model_dump()}
    held = repo.batch_lease(params["batch_id"]) if params.get("batch_id") else None
    if held is not None and not params.get("wait_for_runner_s"):
        # The flow refuses it too (the lease is taken there); saying so here costs no server start.
        raise BatchBusy.held(params["batch_id"], *held)
    server = connect(settings)
    if params.get("mode") == "assisted":
        console.print(
            Text.assemble(
                "ASSISTED: the run waits before generating until its plan is accepted or edited in the ",
                ("Prefect UI", "bold"),
                f" ({server.ui_url}, the run's Resume form) or with POST /api/v1/jobs/<run id>/input.",
            ),
            soft_wrap=True,
        )
    from tasks.bootstrap import ensure_batch_limits

    ensure_batch_limits(settings)
    from flows.produce_content_batch import produce_content_batch

    batch_id = params.get("batch_id") or uuid.uuid4().hex
    result: dict[str, Any] = {}

    def run() -> None:
        from prefect import tags

        try:
            # The same tags API-started runs carry, so the UI filters runs by persona and batch.
            with tags("contentforge", f"persona:{request.persona.id}", f"batch:{batch_id}", "cli"):
                state = produce_content_batch(
                    **{**params, "persona": request.persona.id, "batch_id": batch_id}, return_state=True
                )
            # This run's own id: a resumed batch links to the run that resumed it, not the dead one.
            result["run_id"] = state.state_details.flow_run_id
            result["stats"] = state.result()
        except BaseException as exc:  # shown to the user below
            result["error"] = exc

    worker = threading.Thread(target=run, name="batch")
    worker.start()
    total = request.num_pieces
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        images = progress.add_task("images", total=total)
        verdicts = progress.add_task("moderated", total=total)
        while worker.is_alive():
            worker.join(timeout=0.5)
            rows = repo.pieces(batch_id=batch_id)
            progress.update(images, completed=sum(1 for r in rows if r.storage_key or r.error))
            progress.update(verdicts, completed=sum(1 for r in rows if r.verdict is not None or r.error))
    if "error" in result:
        raise result["error"]  # a ContentForgeError becomes one line (main's handler)
    stats = result["stats"]  # the flow's JSON summary: BatchStats fields and stage_seconds
    _print_stats(BatchStats.model_validate(stats), stats.get("stage_seconds"))
    console.print(
        Text.assemble("Images: ", (str((settings.content_dir / request.persona.id).resolve()), "bold"))
    )
    run_id = result.get("run_id")
    ui = f"{server.ui_url}/runs/flow-run/{run_id}" if run_id else server.ui_url
    # One line, so the link stays clickable; Text, so nothing in it is read as markup.
    console.print(Text.assemble("Prefect UI: ", (ui, "bold")), soft_wrap=True)
    console.print("Stop the local Prefect server with `contentforge server stop`.")
    return stats


def _print_stats(stats: BatchStats, stage_seconds: Mapping[str, float] | None = None) -> None:
    table = Table(title=f"batch {stats.batch_id}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for name, count in stats.by_status.items():
        table.add_row(f"status {name}", str(count))
    for name, count in sorted(stats.by_verdict.items()):
        table.add_row(f"verdict {name}", str(count))
    table.add_row("hooks", str(stats.hooks))
    table.add_row("cost total (USD)", f"{stats.cost_usd_total:.4f}")
    if stats.generation_seconds_mean is not None:
        table.add_row("mean s / image", f"{stats.generation_seconds_mean:.3f}")
    for stage, seconds in (stage_seconds or {}).items():
        # Planning is a duration; images, hooks and moderation overlap and say when each was done.
        label = "planning (s)" if stage == "plan" else f"{stage} done after (s)"
        table.add_row(label, f"{seconds:.2f}")
    console.print(table)


@app.command()
def demo(
    num_pieces: Annotated[int, typer.Option(help="Pieces to produce.")] = 50,
    platform: Annotated[str, typer.Option(help="Target platform.")] = "instagram",
) -> None:
    """Start (or reuse) a local Prefect server and produce a batch for the sample persona, offline."""
    from contentforge.personas import sample_persona

    settings = context.settings()
    persona = sample_persona()
    context.repository().upsert_persona(persona)
    console.print(
        Text.assemble(
            "Sample persona ",
            (persona.name, "bold"),
            f" ({persona.id}); image profile {settings.image_profile}",
        )
    )
    _run_batch(settings, persona=persona.id, num_pieces=num_pieces, platform=platform, tier_mix=None, seed=0)


@app.command()
def produce(
    persona: Annotated[str, typer.Argument(help="Persona id, name, or a YAML/JSON file.")],
    num_pieces: Annotated[int, typer.Option("--num-pieces", "-n")] = 50,
    platform: Annotated[str, typer.Option()] = "instagram",
    tier_mix: Annotated[str | None, typer.Option(help="e.g. safe=0.7,suggestive=0.3")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    no_hooks: Annotated[bool, typer.Option("--no-hooks")] = False,
    no_safety: Annotated[bool, typer.Option("--no-safety-check")] = False,
    batch_id: Annotated[
        str | None, typer.Option(help="Resume this batch instead of starting a new one.")
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            min=0, help="If another run holds the batch, wait this many seconds for it instead of refusing."
        ),
    ] = 0.0,
    priority: Annotated[
        str,
        typer.Option(
            help="high | normal | low: a waiting high generation takes the next free slot; "
            "equal priorities share the slots evenly."
        ),
    ] = "normal",
    mode: Annotated[
        str,
        typer.Option(
            help="manual: the settings' LoRAs and parameters; auto: recommended per piece; assisted: "
            "recommended, then accepted or edited in the Prefect UI before generating."
        ),
    ] = "manual",
    template: Annotated[str | None, typer.Option(help="Every piece uses this template id.")] = None,
    prompt: Annotated[str | None, typer.Option(help="Your own image prompt for every piece.")] = None,
    negative: Annotated[str | None, typer.Option(help="Negative prompt (added to the safety ones).")] = None,
    steps: Annotated[int | None, typer.Option(help="1-150.")] = None,
    guidance: Annotated[float | None, typer.Option(help="0-30.")] = None,
    width: Annotated[int | None, typer.Option(help="Multiple of 8 within the family's limits.")] = None,
    height: Annotated[int | None, typer.Option(help="Multiple of 8 within the family's limits.")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="e.g. euler_a, dpmpp_2m; Flux: flow_match_euler.")
    ] = None,
) -> None:
    """Produce a batch for a persona (optionally of one template or your own prompt, with your parameters)."""
    from contentforge.piece_requests import check_piece_request, requested_tier_mix

    settings = context.settings()
    # Checked before the server starts or any model loads: one line if refused.
    request = check_piece_request(
        settings,
        template,
        prompt=prompt,
        negative_prompt=negative,
        steps=steps,
        guidance_scale=guidance,
        width=width,
        height=height,
        scheduler=scheduler,
    )
    if template is not None and tier_mix is not None:
        fail("--template decides the tier (every piece uses it); leave out --tier-mix")
    _run_batch(
        settings,
        persona=persona,
        num_pieces=num_pieces,
        platform=platform,
        tier_mix=requested_tier_mix(template) or tier_mix,
        seed=seed,
        include_hooks=not no_hooks,
        safety_check=not no_safety,
        batch_id=batch_id,
        wait_for_runner_s=wait,
        priority=priority,
        mode=mode,
        **request.flow_parameters(),
    )


@app.command()
def templates(
    category: Annotated[str | None, typer.Option()] = None,
    tier: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[list[str] | None, typer.Option()] = None,
) -> None:
    """List the template library, optionally filtered."""
    from contentforge.catalog import filter_templates, load_templates
    from contentforge.domain import TemplateTier

    try:
        chosen_tier = TemplateTier(tier) if tier else None
    except ValueError:
        fail(f"unknown tier {tier!r}; use safe or suggestive")
    rows = filter_templates(load_templates(), category=category, tier=chosen_tier, tags=tag or ())
    table = Table("id", "category", "tier", "tags", "prompt")
    for t in rows:
        table.add_row(t.id, t.category, t.tier.value, ", ".join(t.tags), t.prompt[:60] + "…")
    console.print(table)


@app.command()
def pieces(
    batch: Annotated[str | None, typer.Option(help="Batch id.")] = None,
    persona: Annotated[str | None, typer.Option(help="Persona id.")] = None,
    status: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """List pieces with their template, verdict, seed and file."""
    from contentforge.domain import PieceStatus
    from contentforge.validation import check_persona_id, check_stored_batch_id

    if batch is not None:
        check_stored_batch_id(batch)
    if persona is not None:
        check_persona_id(persona)
    try:
        wanted = PieceStatus(status) if status else None
    except ValueError:
        fail(f"unknown status {status!r}; use one of {', '.join(s.value for s in PieceStatus)}")
    table = Table("piece", "template", "status", "verdict", "seed", "s", "hooks", "url")
    for row in context.repository().pieces(batch_id=batch, persona_id=persona, status=wanted, limit=limit):
        table.add_row(
            row.id,
            row.template_id,
            row.status.value,
            row.verdict.value if row.verdict else "",
            str(row.seed),
            f"{row.generation_seconds or 0:.2f}",
            str(len(row.hooks)),
            row.url or "",
        )
    console.print(table)


@app.command()
def stats(batch: Annotated[str | None, typer.Argument(help="Batch id; default the latest.")] = None) -> None:
    """Show a batch's counts, cost and timings."""
    from contentforge.validation import check_stored_batch_id

    if batch is not None:
        check_stored_batch_id(batch)
    repo = context.repository()
    if batch is None:
        latest = repo.latest_batches(limit=1)
        if not latest:
            fail("no batches yet; run `contentforge demo`")
        batch = latest[0].id
    try:
        _print_stats(repo.batch_stats(batch))
    except LookupError:
        fail(f"unknown batch {batch!r}")


@app.command()
def verify(image: Annotated[Path, typer.Argument(help="A PNG, JPEG or WebP file.")]) -> None:
    """Print an image's AI provenance (IPTC DigitalSourceType, generation record); exit 1 if absent."""
    from contentforge.images.provenance import DIGITAL_SOURCE_TYPE, read_image_provenance

    if not image.is_file():
        fail(f"no such file: {image}")
    provenance = read_image_provenance(image)
    console.print(f"file: {image} ({provenance.format})", highlight=False)
    console.print(f"DigitalSourceType: {provenance.digital_source_type or 'absent'}", highlight=False)
    record = provenance.record
    if record is not None:
        loras = ", ".join(f"{lora.source}@{lora.scale:g}" for lora in record.loras) or "none"
        console.print(f"model: {record.model} (backend {record.backend})", highlight=False)
        console.print(f"LoRA: {loras}", highlight=False)
        console.print(f"seed: {record.seed}", highlight=False)
        console.print(
            f"parameters: steps={record.steps} guidance={record.guidance_scale:g} size={record.width}x"
            f"{record.height} scheduler={record.scheduler or '-'}",
            highlight=False,
        )
        console.print(f"prompt: {record.prompt}", highlight=False)
    else:
        console.print("generation record: absent", highlight=False)
    if provenance.c2pa_manifest is not None:
        console.print(f"C2PA manifest: {provenance.c2pa_manifest}", highlight=False)
    if provenance.digital_source_type != DIGITAL_SOURCE_TYPE or record is None:
        console.print(
            Text.assemble(
                ("provenance incomplete:", "bold red"), " not labelled as AI-generated by ContentForge"
            )
        )
        raise typer.Exit(code=1)


@app.command()
def costs(
    persona: Annotated[
        str | None, typer.Option("--persona", "-p", help="Only this persona (id or name).")
    ] = None,
    brand: Annotated[str | None, typer.Option("--brand", "-b", help="Only this brand (id or name).")] = None,
) -> None:
    """Show what was spent: per batch (by kind) and per strategy step (model calls, tokens)."""
    from contentforge.db.models import COST_KINDS

    repo = context.repository()
    persona_id = brand_id = None
    if persona is not None:
        found = repo.get_persona(persona)
        if found is None:
            fail(f"unknown persona {persona!r}")
        persona_id = found.id
    if brand is not None:
        brand_id = context.strategy_store(repo).get_brand(brand)[0]  # RecordNotFound: one line (main)
    report = repo.cost_report(persona_id=persona_id, brand_id=brand_id)
    batches = Table("batch", "persona", "entries", *COST_KINDS, "USD", title="batches")
    for line in report.batches:
        by_kind = [f"{line.usd_by_kind.get(kind, 0.0):.4f}" for kind in COST_KINDS]
        batches.add_row(line.batch_id, line.persona_id, str(line.entries), *by_kind, f"{line.usd:.4f}")
    steps = Table("step", "calls", "tokens in", "tokens out", "USD", title="strategy steps (model calls)")
    for step in report.steps:
        steps.add_row(
            step.step, str(step.calls), str(step.input_tokens), str(step.output_tokens), f"{step.usd:.4f}"
        )
    console.print(batches)
    console.print(steps)
    console.print(f"total: {report.total_usd:.4f} USD", highlight=False)
