"""``contentforge publish``: schedule pieces into posting slots, publish what is due, list publications."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from contentforge_cli import context
from contentforge_cli.context import console, fail

app = typer.Typer(help="Schedule and publish pieces (outbox, webhook, Instagram, X, TikTok).")


@app.command("schedule")
def publish_schedule(
    batch_id: Annotated[str, typer.Argument(help="Batch whose ready pieces get posting slots.")],
    platform: Annotated[list[str], typer.Option("--platform", "-p", help="Repeat for several.")],
    start: Annotated[str | None, typer.Option(help="ISO time of the first slot; default now.")] = None,
) -> None:
    """Give the batch's publishable pieces the persona's next free posting slots.

    Posting hours learned for the persona and platform (``contentforge analytics best-times``) replace
    the configured slots where there is enough history, as the scheduler flow does; each scheduled
    piece records why its slot was chosen, and the command prints it.
    """
    from datetime import UTC, datetime

    from contentforge.analytics.feedback import LearnedSlots, batch_seed
    from contentforge.db.analytics import AnalyticsStore
    from contentforge.publishing import publisher_name
    from contentforge.publishing.scheduling import parse_slot_times, schedule_batch
    from contentforge.validation import check_platforms, check_stored_batch_id

    settings = context.settings()
    try:
        check_stored_batch_id(batch_id)
        platforms = [p.value for p in check_platforms(platform)]
        begin = datetime.fromisoformat(start) if start else datetime.now(UTC)
        if begin.tzinfo is None:
            fail(f"--start {start!r} needs a UTC offset, e.g. 2026-03-01T09:00+01:00")
        configured = parse_slot_times(settings.publish_slots)
        learned = LearnedSlots(
            AnalyticsStore(context.repository().sessions),
            default=configured,
            daily_limit=settings.publish_daily_limit,
            seed=batch_seed(batch_id),
        )
        outcome = schedule_batch(
            context.ledger(),
            batch_id,
            platforms,
            start=begin,
            slot_times=configured,
            daily_limit=settings.publish_daily_limit,
            publisher_for=lambda p: publisher_name(settings, p),
            slot_times_for=learned.slot_times_for,
        )
    except ValueError as exc:  # a --start that is no ISO time, a slot setting that does not parse
        fail(str(exc))
    for persona_id, slot_platform in list(learned.reasons):
        learned.record(persona_id, slot_platform, outcome.slots.get(slot_platform, []))
        console.print(
            f"{slot_platform} slots: {learned.explain(persona_id, slot_platform)}",
            highlight=False,
            soft_wrap=True,
        )
    result = outcome.result
    console.print(
        f"{len(result.scheduled)} scheduled, {len(result.existing)} already scheduled, "
        f"{result.refused_count} refused"
    )
    for _, _, reason in result.refused[:20]:
        console.print(f"  refused: {reason}", highlight=False)


@app.command("plan")
def publish_plan(path: Annotated[Path, typer.Argument(help="CSV with piece_id,platform,when.")]) -> None:
    """Schedule a hand-made posting plan (naive times are in each persona's timezone)."""
    from contentforge.publishing import publisher_name
    from contentforge.publishing.scheduling import parse_plan_csv
    from contentforge.validation import PLAN_FILE_MAX_BYTES, read_text_file

    settings = context.settings()
    repo, ledger = context.repository(), context.ledger()
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
    except OSError as exc:  # the plan file cannot be read
        fail(str(exc))
    console.print(f"{len(result.scheduled)} scheduled, {result.refused_count} refused")
    for _, _, reason in result.refused:
        console.print(f"  refused: {reason}", highlight=False)


@app.command("due")
def publish_due_command(
    limit: Annotated[int, typer.Option(help="Most publications to publish now.")] = 20,
) -> None:
    """Publish what is due now (the flow `publish-due`, on the local Prefect server)."""
    from contentforge.publishing.factory import describe
    from contentforge_cli.runtime import connect

    settings = context.settings()
    console.print(f"publishers: {describe(settings)}", highlight=False)
    connect(settings)
    from flows.publish_due import publish_due

    result = publish_due(limit=limit)
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


@app.command("list")
def publish_list(
    status: Annotated[str | None, typer.Option(help="scheduled, publishing, published or failed.")] = None,
    batch: Annotated[str | None, typer.Option(help="Batch id.")] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """Show publications: where each piece goes, when, and what happened."""
    rows = context.ledger().list(status=status, batch_id=batch, limit=limit)
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
