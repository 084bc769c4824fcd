"""``contentforge``: run the demo, produce batches, list personas, templates and pieces.

Errors a user can act on (``ContentForgeError``) print as one line and exit with code 2, before
any generation starts. Settings are validated by the first command that reads them, before any
server starts. Output never interprets markup: the console prints user text (persona names, ids,
file names, hooks) literally, and styling is applied with ``Text``/``style=``, never ``[tags]``.
"""

from __future__ import annotations

import os
import sys

# transformers warns at import about optional torchvision image processors nobody here uses; set
# before anything imports it (validation may load the image backend before `connect`). Errors show.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from contentforge.config import Settings
from contentforge.errors import BatchBusy, ContentForgeError
from contentforge.validation import InvalidSettings, load_settings

app = typer.Typer(
    help="ContentForge: social-media content batches for AI personas, on Prefect.", no_args_is_help=True
)
personas_app = typer.Typer(help="Create and list personas.", no_args_is_help=True)
server_app = typer.Typer(help="The local Prefect server.", no_args_is_help=True)
app.add_typer(personas_app, name="personas")
app.add_typer(server_app, name="server")
publish_app = typer.Typer(help="Schedule and publish pieces (outbox, webhook, Instagram, X, TikTok).")
app.add_typer(publish_app, name="publish")
review_app = typer.Typer(
    help="Pieces waiting for a human decision (status needs_review).", no_args_is_help=True
)
app.add_typer(review_app, name="review")
console = Console(markup=False)  # user text is printed as it is: "[red]x" stays "[red]x"


def _fail(message: str) -> NoReturn:
    """One line (never wrapped, never interpreted as markup), exit code 2."""
    console.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _warn(message: str) -> None:
    console.print(Text.assemble(("warning: ", "yellow"), message), highlight=False, soft_wrap=True)


def _settings() -> Settings:
    """The settings, or one line naming the bad ``CONTENTFORGE_*`` variable (exit 2)."""
    try:
        return load_settings()
    except InvalidSettings as exc:
        _fail(str(exc))


def _check(check: Callable[[str], str], value: str | None) -> None:
    """Run a ``contentforge.validation`` check on an optional identifier; one line if it fails."""
    if value is not None:
        try:
            check(value)
        except ContentForgeError as exc:
            _fail(str(exc))


def _repository():  # type: ignore[no-untyped-def]
    from contentforge.db import Repository, make_engine, migrate

    url = _settings().resolved_database_url
    migrate(url)
    return Repository(make_engine(url))


def _run_batch(settings: Settings, **params: Any) -> dict[str, Any]:
    """Run the batch flow on the server, showing a progress bar fed from the database."""
    from contentforge.batch import validate_batch_request
    from contentforge_cli.runtime import connect

    repo = _repository()
    # Validate before the server starts or any model loads: bad input costs nothing. This checks
    # the batch id too (pattern, owner, piece ids) and saves a persona file only once all is valid.
    request = validate_batch_request(
        repo,
        settings,
        **{k: params.get(k) for k in ("persona", "num_pieces", "platform", "tier_mix", "seed", "batch_id")},
    )
    params = {**params, "platform": request.platform.value, "tier_mix": request.tier_mix.model_dump()}
    held = repo.batch_lease(params["batch_id"]) if params.get("batch_id") else None
    if held is not None and not params.get("wait_for_runner_s"):
        # The flow refuses it too (the lease is taken there); saying so here costs no server start.
        raise BatchBusy(
            f"batch {params['batch_id']} is already being run by {held[0]} (lease until "
            f"{held[1]:%H:%M:%S} UTC unless renewed); wait for it, or pass --wait SECONDS"
        )
    server = connect(settings)
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
        error = result["error"]
        if isinstance(error, ContentForgeError):
            _fail(str(error))
        raise error
    stats = result["stats"]
    _print_stats(stats)
    console.print(
        Text.assemble("Images: ", (str((settings.content_dir / request.persona.id).resolve()), "bold"))
    )
    run_id = result.get("run_id")
    ui = f"{server.ui_url}/runs/flow-run/{run_id}" if run_id else server.ui_url
    # One line, so the link stays clickable; Text, so nothing in it is read as markup.
    console.print(Text.assemble("Prefect UI: ", (ui, "bold")), soft_wrap=True)
    console.print("Stop the local Prefect server with `contentforge server stop`.")
    return stats


def _print_stats(stats: dict[str, Any]) -> None:
    table = Table(title=f"batch {stats['batch_id']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for name, count in stats["by_status"].items():
        table.add_row(f"status {name}", str(count))
    for name, count in sorted(stats["by_verdict"].items()):
        table.add_row(f"verdict {name}", str(count))
    table.add_row("hooks", str(stats["hooks"]))
    table.add_row("cost total (USD)", f"{stats['cost_usd_total']:.4f}")
    if stats.get("generation_seconds_mean") is not None:
        table.add_row("mean s / image", f"{stats['generation_seconds_mean']:.3f}")
    for stage, seconds in (stats.get("stage_seconds") or {}).items():
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

    settings = _settings()
    try:
        persona = sample_persona()
        _repository().upsert_persona(persona)
        console.print(
            Text.assemble(
                "Sample persona ",
                (persona.name, "bold"),
                f" ({persona.id}); image profile {settings.image_profile}",
            )
        )
        _run_batch(
            settings, persona=persona.id, num_pieces=num_pieces, platform=platform, tier_mix=None, seed=0
        )
    except ContentForgeError as exc:
        _fail(str(exc))


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
) -> None:
    """Produce a batch for a persona."""
    settings = _settings()
    try:
        _run_batch(
            settings,
            persona=persona,
            num_pieces=num_pieces,
            platform=platform,
            tier_mix=tier_mix,
            seed=seed,
            include_hooks=not no_hooks,
            safety_check=not no_safety,
            batch_id=batch_id,
            wait_for_runner_s=wait,
        )
    except ContentForgeError as exc:
        _fail(str(exc))


@personas_app.command("add")
def personas_add(path: Annotated[Path, typer.Argument(help="A persona YAML or JSON file.")]) -> None:
    """Create or update a persona from a file."""
    from contentforge.personas import load_persona_file

    try:
        persona = load_persona_file(path)
        _repository().upsert_persona(persona)
    except ContentForgeError as exc:
        _fail(str(exc))
    console.print(f"saved persona {persona.id} ({persona.name})")


@personas_app.command("list")
def personas_list() -> None:
    """List the saved personas."""
    table = Table("id", "name", "niche", "platforms", "LoRA")
    for persona in _repository().list_personas():
        lora = f"{persona.lora.source} ({persona.trigger_word}, {persona.lora.scale})" if persona.lora else ""
        table.add_row(persona.id, persona.name, persona.niche, ", ".join(persona.platforms), lora)
    console.print(table)


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
        _fail(f"unknown tier {tier!r}; use safe or suggestive")
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

    _check(check_stored_batch_id, batch)
    _check(check_persona_id, persona)

    try:
        wanted = PieceStatus(status) if status else None
    except ValueError:
        _fail(f"unknown status {status!r}; use one of {', '.join(s.value for s in PieceStatus)}")
    table = Table("piece", "template", "status", "verdict", "seed", "s", "hooks", "url")
    for row in _repository().pieces(batch_id=batch, persona_id=persona, status=wanted, limit=limit):
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

    _check(check_stored_batch_id, batch)
    repo = _repository()
    if batch is None:
        latest = repo.latest_batches(limit=1)
        if not latest:
            _fail("no batches yet; run `contentforge demo`")
        batch = latest[0]["id"]
    try:
        _print_stats(repo.batch_stats(batch))
    except LookupError:
        _fail(f"unknown batch {batch!r}")


@app.command()
def bootstrap(
    gpu_worker_type: Annotated[
        str, typer.Option(help="Worker type of the gpu pool: process, docker or kubernetes.")
    ] = "process",
) -> None:
    """Create the concurrency limits, the cpu and gpu work pools and their queues (idempotent)."""
    from contentforge_cli.runtime import connect

    if gpu_worker_type not in ("process", "docker", "kubernetes"):
        _fail(f"unknown gpu worker type {gpu_worker_type!r}; use process, docker or kubernetes")
    settings = _settings()
    connect(settings)
    from tasks.bootstrap import bootstrap_cluster

    for what, outcome in bootstrap_cluster(settings, gpu_worker_type).items():
        console.print(f"{what}: {outcome}")


@app.command()
def deploy() -> None:
    """Register (or update) every deployment of prefect.yaml on the Prefect server."""
    from contentforge_cli.runtime import connect

    connect(_settings())
    from contentforge_cli.stack import deploy_all

    for name, deployment_id in deploy_all().items():
        console.print(f"deployment {name}: {deployment_id}")


@app.command()
def up(
    api: Annotated[bool, typer.Option(help="Also serve the ContentForge API on 127.0.0.1:8000.")] = True,
) -> None:
    """Start the local stack: Prefect server, pools and deployments, a cpu and a gpu worker, the API.

    Batches started on the cpu pool run their GPU stage as the generate-images deployment on the gpu
    pool. Everything is detached and survives this command; `contentforge down` stops it.
    """
    from contentforge_cli.runtime import connect

    settings = _settings()
    server = connect(settings)
    from contentforge_cli.stack import Service, deploy_all, start, worker_services
    from tasks.bootstrap import bootstrap_cluster

    for what, outcome in bootstrap_cluster(settings).items():
        console.print(f"{what}: {outcome}")
    deploy_all()
    run_dir = settings.data_dir / "run"
    gpu_deployment = settings.gpu_deployment or "generate-images/generate-images"
    services = worker_services(server.api_url, settings.cpu_pool, settings.gpu_pool, gpu_deployment)
    if api:
        api_env = dict(os.environ, PREFECT_API_URL=server.api_url)
        command = [sys.executable, "-m", "contentforge_cli.main", "api", "serve"]
        if settings.api_token is None:
            console.print("CONTENTFORGE_API_TOKEN is not set: the API serves loopback only, without auth")
            command.append("--insecure-local")
        services.append(Service("api", command, api_env))
    for service in services:
        pid, started = start(run_dir, service)
        console.print(f"{service.name}: pid {pid} ({'started' if started else 'already running'})")
    console.print(f"Prefect UI: {server.ui_url}", soft_wrap=True)
    console.print(f"Logs: {run_dir}")


@app.command()
def down(
    server: Annotated[bool, typer.Option(help="Also stop the Prefect server.")] = True,
) -> None:
    """Stop what `contentforge up` started (state stays in the data directory for the next `up`)."""
    from contentforge_cli.server import stop_server
    from contentforge_cli.stack import stop

    settings = _settings()
    run_dir = settings.data_dir / "run"
    for name in ("api", "gpu-worker", "cpu-worker"):
        console.print(f"{name}: {'stopped' if stop(run_dir, name) else 'not running'}")
    if server:
        console.print(f"prefect server: {'stopped' if stop_server(settings.prefect_home) else 'not running'}")


@server_app.command("start")
def server_start() -> None:
    """Start (or reuse) the local Prefect server."""
    from contentforge_cli.server import ensure_server

    settings = _settings()
    server = ensure_server(
        settings.prefect_home, port=settings.prefect_port, database_url=settings.prefect_database_url
    )
    console.print(f"Prefect UI: {server.ui_url} ({'started' if server.started else 'already running'})")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server started by ContentForge."""
    from contentforge_cli.server import stop_server

    stopped = stop_server(_settings().prefect_home)
    console.print("stopped" if stopped else "no server recorded")


# --- Safety: review queue and provenance -------------------------------------------------------------


def _review_queue():  # type: ignore[no-untyped-def]
    from contentforge.moderation.review import ReviewQueue

    return ReviewQueue.from_settings(_settings())


@review_app.command("list")
def review_list(
    batch: Annotated[str | None, typer.Option(help="Batch id.")] = None,
    persona: Annotated[str | None, typer.Option(help="Persona id.")] = None,
    limit: Annotated[int, typer.Option()] = 100,
) -> None:
    """List pieces waiting for review, with their top scores and why they wait."""
    items = _review_queue().pending(batch_id=batch, persona_id=persona, limit=limit)
    table = Table("piece", "batch", "persona", "verdict", "top scores", "why", "url")
    for item in items:
        top = sorted(item.scores.items(), key=lambda kv: -kv[1])[:2]
        why = "; ".join(
            r.removeprefix("needs review: ") for r in item.reasons if r.startswith("needs review")
        )
        table.add_row(
            item.piece_id,
            item.batch_id[:12],
            item.persona_id,
            item.verdict or "",
            ", ".join(f"{k} {v:.2f}" for k, v in top),
            why,
            item.url or "",
        )
    console.print(table)
    console.print(f"{len(items)} piece(s) waiting for review")


@review_app.command("approve")
def review_approve(
    piece: Annotated[str, typer.Argument(help="Piece id.")],
    reviewer: Annotated[str, typer.Option(help="Who decides.")],
    reason: Annotated[str, typer.Option(help="Why (optional for approvals).")] = "",
    tier: Annotated[
        str | None, typer.Option(help="safe, suggestive or restricted; default the policy's.")
    ] = None,
) -> None:
    """Approve a piece: it becomes ready (publishable on the platforms its tier allows)."""
    from contentforge.validation import check_piece_id

    _check(check_piece_id, piece)
    try:
        _review_queue().approve(piece, reviewer=reviewer, reason=reason, tier=tier)
    except ContentForgeError as exc:
        _fail(str(exc))
    console.print(f"{piece}: approved by {reviewer}")


@review_app.command("reject")
def review_reject(
    piece: Annotated[str, typer.Argument(help="Piece id.")],
    reviewer: Annotated[str, typer.Option(help="Who decides.")],
    reason: Annotated[str, typer.Option(help="Why; required.")],
) -> None:
    """Reject a piece: it is never published; the reason is recorded."""
    from contentforge.validation import check_piece_id

    _check(check_piece_id, piece)
    try:
        _review_queue().reject(piece, reviewer=reviewer, reason=reason)
    except ContentForgeError as exc:
        _fail(str(exc))
    console.print(f"{piece}: rejected by {reviewer}")


@app.command()
def verify(image: Annotated[Path, typer.Argument(help="A PNG, JPEG or WebP file.")]) -> None:
    """Print an image's AI provenance (IPTC DigitalSourceType, generation record); exit 1 if absent."""
    from contentforge.images.provenance import DIGITAL_SOURCE_TYPE, read_image_provenance

    if not image.is_file():
        _fail(f"no such file: {image}")
    try:
        provenance = read_image_provenance(image)
    except ContentForgeError as exc:
        _fail(str(exc))
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


# --- publish ------------------------------------------------------------------------------------


def _ledger():  # type: ignore[no-untyped-def]
    from contentforge.publishing.factory import build_ledger

    return build_ledger(_settings())


@publish_app.command("schedule")
def publish_schedule(
    batch_id: Annotated[str, typer.Argument(help="Batch whose ready pieces get posting slots.")],
    platform: Annotated[list[str], typer.Option("--platform", "-p", help="Repeat for several.")],
    start: Annotated[str | None, typer.Option(help="ISO time of the first slot; default now.")] = None,
) -> None:
    """Give the batch's publishable pieces the persona's next free posting slots."""
    from datetime import UTC, datetime

    from contentforge.publishing import publisher_name
    from contentforge.publishing.scheduling import parse_slot_times, schedule_batch
    from contentforge.validation import check_platforms, check_stored_batch_id

    settings = _settings()
    try:
        check_stored_batch_id(batch_id)
        platforms = [p.value for p in check_platforms(platform)]
        begin = datetime.fromisoformat(start) if start else datetime.now(UTC)
        if begin.tzinfo is None:
            _fail(f"--start {start!r} needs a UTC offset, e.g. 2026-03-01T09:00+01:00")
        outcome = schedule_batch(
            _ledger(),
            batch_id,
            platforms,
            start=begin,
            slot_times=parse_slot_times(settings.publish_slots),
            daily_limit=settings.publish_daily_limit,
            publisher_for=lambda p: publisher_name(settings, p),
        )
    except (ContentForgeError, ValueError) as exc:
        _fail(str(exc))
    result = outcome.result
    console.print(
        f"{len(result.scheduled)} scheduled, {len(result.existing)} already scheduled, "
        f"{result.refused_count} refused"
    )
    for _, _, reason in result.refused[:20]:
        console.print(f"  refused: {reason}", highlight=False)


@publish_app.command("plan")
def publish_plan(path: Annotated[Path, typer.Argument(help="CSV with piece_id,platform,when.")]) -> None:
    """Schedule a hand-made posting plan (naive times are in each persona's timezone)."""
    from contentforge.publishing import publisher_name
    from contentforge.publishing.scheduling import parse_plan_csv
    from contentforge.validation import PLAN_FILE_MAX_BYTES, read_text_file

    settings = _settings()
    repo, ledger = _repository(), _ledger()
    zones: dict[str, str | None] = {}

    def timezone_for(piece_id: str) -> str | None:
        if piece_id not in zones:
            piece = repo.get_piece(piece_id)
            persona = repo.get_persona(piece.persona_id) if piece else None
            zones[piece_id] = persona.timezone if persona else None
        return zones[piece_id]

    try:
        text = read_text_file(path, what="posting plan", max_bytes=PLAN_FILE_MAX_BYTES)
        rows = parse_plan_csv(text, timezone_for)
        result = ledger.schedule_many(
            [(r.piece_id, r.platform, r.when) for r in rows],
            publisher_for=lambda p: publisher_name(settings, p),
        )
    except (ContentForgeError, OSError) as exc:
        _fail(str(exc))
    console.print(f"{len(result.scheduled)} scheduled, {result.refused_count} refused")
    for _, _, reason in result.refused:
        console.print(f"  refused: {reason}", highlight=False)


@publish_app.command("due")
def publish_due_command(
    limit: Annotated[int, typer.Option(help="Most publications to publish now.")] = 20,
) -> None:
    """Publish what is due now (the flow `publish-due`, on the local Prefect server)."""
    from contentforge.publishing.factory import describe
    from contentforge_cli.runtime import connect

    settings = _settings()
    try:
        console.print(f"publishers: {describe(settings)}", highlight=False)
        connect(settings)
        from flows.publish_due import publish_due

        result = publish_due(limit=limit)
    except ContentForgeError as exc:
        _fail(str(exc))
    console.print(
        f"{result['claimed']} due: {result['published']} published, {result['deferred']} deferred, "
        f"{result['failed']} failed"
    )
    for outcome in result["outcomes"]:
        console.print(
            f"  {outcome['platform']:<10} {outcome['piece_id']}  {outcome['status']}  "
            f"{outcome['url'] or outcome['error'] or ''}",
            highlight=False,
        )


@publish_app.command("list")
def publish_list(
    status: Annotated[str | None, typer.Option(help="scheduled, publishing, published or failed.")] = None,
    batch: Annotated[str | None, typer.Option(help="Batch id.")] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """Show publications: where each piece goes, when, and what happened."""
    rows = _ledger().list(status=status, batch_id=batch, limit=limit)
    table = Table(title=f"{len(rows)} publications")
    for column in ("id", "piece", "platform", "publisher", "status", "when (UTC)", "tries", "post / error"):
        table.add_column(column)
    for row in rows:
        when = f"{row.scheduled_for:%Y-%m-%d %H:%M}" if row.scheduled_for else ""
        table.add_row(
            str(row.id),
            row.piece_id,
            row.platform,
            row.publisher,
            row.status,
            when,
            str(row.attempts),
            row.post_url or row.platform_post_id or (row.last_error or "")[:80],
        )
    console.print(table)


# --- REST API and review gallery (contentforge_api) -------------------------------------------------

api_app = typer.Typer(help="The ContentForge REST API and review gallery.", no_args_is_help=True)
app.add_typer(api_app, name="api")


@api_app.command("serve")
def api_serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind; default CONTENTFORGE_API_HOST.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port; default CONTENTFORGE_API_PORT.")] = None,
    insecure_local: Annotated[
        bool,
        typer.Option("--insecure-local", help="Run without CONTENTFORGE_API_TOKEN (loopback binds only)."),
    ] = False,
) -> None:
    """Serve the API (/api/v1, OpenAPI at /api/v1/openapi.json) and the gallery (/gallery/batches/ID)."""
    import ipaddress

    import uvicorn

    from contentforge_cli.runtime import connect

    settings = _settings()
    host = host or settings.api_host
    port = port or settings.api_port
    if insecure_local:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            _fail(f"--insecure-local only binds a loopback address (127.0.0.1, ::1), not {host!r}")
    elif not (settings.api_token and settings.api_token.get_secret_value()):
        _fail("CONTENTFORGE_API_TOKEN is not set; set it, or use --insecure-local on 127.0.0.1")
    try:
        server = connect(settings)  # batches start on this Prefect server; Prefect is imported after it
        from contentforge_api.app import create_app

        application = create_app(settings, insecure_local=insecure_local)
    except (ContentForgeError, RuntimeError) as exc:  # ApiConfigError is a RuntimeError
        _fail(str(exc))
    console.print(f"Prefect API: {server.api_url}", highlight=False)
    console.print(f"ContentForge API: http://{host}:{port}/api/v1/docs", highlight=False)
    uvicorn.run(application, host=host, port=port, log_level="info")


# --- brand research and personas (flows research-brand, create-personas; README "From brand to posts") ---
brand_app = typer.Typer(
    help="Brand research: a sourced BrandDNA from websites and documents.", no_args_is_help=True
)
app.add_typer(brand_app, name="brand")


def _dna_table(dna: Any) -> Table:
    from contentforge.domain.strategy import DNA_FIELDS

    table = Table(
        "field", "value", "how", "source", title=f"{dna.brand}: {len(dna.known_fields())}/{len(DNA_FIELDS)}"
    )
    for name in DNA_FIELDS:
        field = dna.field(name)
        table.add_row(name, field.display()[:80], str(field.method or ""), field.source or "")
    return table


@brand_app.command("research")
def brand_research(
    name: Annotated[str, typer.Argument(help="The brand's name.")],
    url: Annotated[list[str] | None, typer.Option("--url", "-u", help="Website URL (repeatable).")] = None,
    doc: Annotated[list[Path] | None, typer.Option("--doc", "-d", help="A .txt/.md/.html/.pdf file.")] = None,
) -> None:
    """Research a brand (flow research-brand) and print its DNA; each field with its source or unknown."""
    from contentforge.research.documents import load_document
    from contentforge.research.fetch import FetchLimits, SafeFetcher

    settings = _settings()
    urls, docs = list(url or []), list(doc or [])
    try:
        if not urls and not docs:
            raise ContentForgeError("give at least one --url or --doc")
        fetcher = SafeFetcher(FetchLimits.from_settings(settings))
        for u in urls:
            fetcher.check_url(u)  # refused addresses fail before the server starts
        for d in docs:
            load_document(d)
        from contentforge_cli.runtime import connect

        connect(settings)
        from flows.research_brand import research_brand

        summary = research_brand(name, urls, [str(d.resolve()) for d in docs])
        from contentforge.strategy.store import StrategyStore

        _, _, dna = StrategyStore(_repository().engine).get_brand(summary["brand_id"])
    except ContentForgeError as exc:
        _fail(str(exc))
    console.print(_dna_table(dna))
    for warning in summary["warnings"]:
        _warn(warning)
    console.print(
        f"saved brand {summary['brand_id']}; next: python flows/create_personas.py {summary['brand_id']}"
    )


@brand_app.command("show")
def brand_show(name: Annotated[str, typer.Argument(help="Brand id or name.")]) -> None:
    """Print a researched brand's DNA."""
    from contentforge.db import RecordNotFound
    from contentforge.strategy.store import StrategyStore

    try:
        _, _, dna = StrategyStore(_repository().engine).get_brand(name)
    except RecordNotFound as exc:
        _fail(str(exc))
    if dna is None:
        _fail(f"brand {name!r} has no DNA yet; run `contentforge brand research`")
    console.print(_dna_table(dna))


@personas_app.command("random")
def personas_random(
    type_hint: Annotated[str, typer.Option("--type", "-t", help="fitness, tech, fashion, food, travel...")],
    seed: Annotated[int | None, typer.Option(help="Same seed, same persona.")] = None,
    save: Annotated[bool, typer.Option("--save", help="Save it as a persona.")] = False,
) -> None:
    """Create a random persona of a type (offline rules from the niche catalog); print it as YAML."""
    import yaml

    from contentforge.strategy.personas import random_persona

    try:
        candidate = random_persona(type_hint, seed=seed)
        persona = candidate.to_persona()
        if save:
            _repository().upsert_persona(persona)
    except ContentForgeError as exc:
        _fail(str(exc))
    console.print(
        yaml.safe_dump(persona.model_dump(mode="json", exclude_none=True), sort_keys=False), highlight=False
    )
    if save:
        console.print(f"saved persona {persona.id} ({persona.name})")


# --- topics, blog posts, social posts (flows plan-topics, write-blog-post, derive-social-posts;
# README "From brand to posts") ---
topics_app = typer.Typer(help="Monthly topic plans for a persona (flow plan-topics).", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
blog_app = typer.Typer(
    help="Long-form blog posts from approved topics (flow write-blog-post).", no_args_is_help=True
)
app.add_typer(blog_app, name="blog")
social_app = typer.Typer(
    help="Platform captions from approved blog posts (flow derive-social-posts).", no_args_is_help=True
)
app.add_typer(social_app, name="social")

_TimeoutOption = Annotated[
    int | None,
    typer.Option(
        "--timeout",
        min=1,
        help="Seconds to wait for the approval in the UI (CONTENTFORGE_APPROVAL_TIMEOUT_S).",
    ),
]


def _waiting_note(settings: Settings, timeout: int | None, what: str) -> None:
    wait = timeout or settings.approval_timeout_s
    console.print(
        f"the flow pauses for {what} approval in the Prefect UI (up to {wait} s)",
        highlight=False,
        style="dim",
    )


@topics_app.command("plan")
def topics_plan(
    persona: Annotated[str, typer.Argument(help="Persona id or name.")],
    month: Annotated[str, typer.Option("--month", "-m", help="The month to plan, YYYY-MM.")],
    brand: Annotated[
        str | None, typer.Option("--brand", "-b", help="A researched brand (id or name).")
    ] = None,
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=20, help="How many topics.")] = 4,
    seed: Annotated[int, typer.Option(help="Same seed, same offline plan.")] = 0,
    timeout: _TimeoutOption = None,
) -> None:
    """Propose topics for a persona's month (flow plan-topics) and wait for their approval."""
    from contentforge.batch import resolve_persona
    from contentforge.db import RecordNotFound
    from contentforge.strategy.topics import parse_month

    settings = _settings()
    try:
        parse_month(month)
        repo = _repository()
        found = resolve_persona(repo, persona, save=False)
        if brand is not None:
            from contentforge.strategy.store import StrategyStore

            StrategyStore(repo.engine).get_brand(brand)
        repo.upsert_persona(found)  # a persona file is saved once the whole request is valid
        from contentforge_cli.runtime import connect

        connect(settings)
        from flows.plan_topics import plan_topics

        _waiting_note(settings, timeout, "the topics'")
        summary = plan_topics(found.id, month, brand=brand, count=count, seed=seed, timeout_s=timeout)
    except (ContentForgeError, RecordNotFound) as exc:
        _fail(str(exc))
    console.print(
        f"{len(summary['topics'])} topics for {found.id} {month}: {len(summary['approved'])} approved, "
        f"{len(summary['rejected'])} rejected{' (timed out)' if summary['timed_out'] else ''}",
        highlight=False,
    )
    for topic_id in summary["approved"]:
        console.print(f"approved {topic_id}; next: contentforge blog write {topic_id}", highlight=False)
    for error in summary["errors"]:
        _warn(error)


@blog_app.command("write")
def blog_write(
    topic_id: Annotated[
        str, typer.Argument(help="An approved topic's id (from `contentforge topics plan`).")
    ],
    pages: Annotated[int, typer.Option("--pages", min=4, max=10, help="Target length in A4 pages.")] = 5,
    seed: Annotated[int, typer.Option(help="Same seed, same offline draft.")] = 0,
    timeout: _TimeoutOption = None,
) -> None:
    """Draft the blog post for an approved topic (flow write-blog-post) and wait for its approval."""
    from contentforge.db import RecordNotFound
    from contentforge.domain.strategy import ApprovalStatus
    from contentforge.strategy.store import StrategyStore

    settings = _settings()
    try:
        topic = StrategyStore(_repository().engine).get_topic(topic_id)
        if topic.status is not ApprovalStatus.approved:
            raise ContentForgeError(
                f"topic {topic_id} is {topic.status.value}; approve it first (contentforge topics plan)"
            )
        from contentforge_cli.runtime import connect

        connect(settings)
        from flows.write_blog_post import write_blog_post

        _waiting_note(settings, timeout, "the draft's")
        summary = write_blog_post(topic_id, target_pages=pages, seed=seed, timeout_s=timeout)
    except (ContentForgeError, RecordNotFound) as exc:
        _fail(str(exc))
    console.print(
        f"post {summary['post_id']}: {summary['status']}, {summary['words']} words "
        f"({summary['pages']:.1f} pages){' (timed out)' if summary['timed_out'] else ''}",
        highlight=False,
    )
    if summary.get("error"):
        _warn(summary["error"])
    if summary["status"] == "approved":
        console.print(f"next: contentforge social derive {summary['post_id']}", highlight=False)


@social_app.command("derive")
def social_derive(
    post_id: Annotated[
        str, typer.Argument(help="An approved blog post's id (from `contentforge blog write`).")
    ],
    platform: Annotated[
        list[str] | None,
        typer.Option("--platform", "-p", help="Platform (repeatable); default: the persona's platforms."),
    ] = None,
) -> None:
    """Write captions for each platform from an approved blog post (flow derive-social-posts)."""
    from contentforge.db import RecordNotFound
    from contentforge.domain import Platform
    from contentforge.domain.strategy import ApprovalStatus
    from contentforge.strategy.store import StrategyStore

    settings = _settings()
    platforms = list(platform or [])
    try:
        known = [p.value for p in Platform]
        if unknown := [p for p in platforms if p not in known]:
            raise ContentForgeError(f"unknown platform {unknown[0]!r}; use one of {', '.join(known)}")
        post = StrategyStore(_repository().engine).get_blog_post(post_id)
        if post.status is not ApprovalStatus.approved:
            raise ContentForgeError(
                f"blog post {post_id} is {post.status.value}; approve it first (contentforge blog write)"
            )
        from contentforge_cli.runtime import connect

        connect(settings)
        from flows.derive_social_posts import derive_social_posts

        summary = derive_social_posts(post_id, platforms or None)
    except (ContentForgeError, RecordNotFound) as exc:
        _fail(str(exc))
    for name, caption in summary["posts"].items():
        console.print(name, style="bold", highlight=False)
        console.print(caption, highlight=False)
        console.print()


# --- the cost ledger: batches and strategy steps (README "From brand to posts") ---
@app.command()
def costs(
    persona: Annotated[
        str | None, typer.Option("--persona", "-p", help="Only this persona (id or name).")
    ] = None,
    brand: Annotated[str | None, typer.Option("--brand", "-b", help="Only this brand (id or name).")] = None,
) -> None:
    """Show what was spent: per batch (by kind) and per strategy step (model calls, tokens)."""
    from contentforge.db import RecordNotFound
    from contentforge.db.models import COST_KINDS
    from contentforge.strategy.store import StrategyStore

    repo = _repository()
    persona_id = brand_id = None
    try:
        if persona is not None:
            found = repo.get_persona(persona)
            if found is None:
                raise ContentForgeError(f"unknown persona {persona!r}")
            persona_id = found.id
        if brand is not None:
            brand_id = StrategyStore(repo.engine).get_brand(brand)[0]
    except (ContentForgeError, RecordNotFound) as exc:
        _fail(str(exc))
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


if __name__ == "__main__":
    sys.exit(app())
