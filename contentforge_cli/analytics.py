"""``contentforge analytics``: collect, import, learn, report, best times, predictions, covers, alerts, demo.

Every command runs the library in this process (no Prefect server needed); the ``collect-metrics``
and ``learn`` deployments run the same code on a schedule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from contentforge_cli import context
from contentforge_cli.context import console, fail

if TYPE_CHECKING:
    from contentforge.analytics.learn import AccountLearning
    from contentforge.db.analytics import AnalyticsStore

app = typer.Typer(help="Metrics, what works, best posting times and reach-drop alerts.")

DEMO_PREFIX = "sim-"
PLATFORMS = ("instagram", "x", "tiktok")


def _store() -> AnalyticsStore:
    from contentforge.db.analytics import AnalyticsStore

    return AnalyticsStore(context.repository().sessions)


def _platform(value: str) -> str:
    platform = value.strip().lower()
    if platform not in PLATFORMS:
        fail(f"unknown platform {value!r}; analytics knows {', '.join(PLATFORMS)}")
    return platform


def _timezone_for(account: str) -> str | None:
    persona = context.repository().get_persona(account)
    return persona.timezone if persona is not None else None


def _learn_one(account: str, platform: str) -> AccountLearning:
    from contentforge.analytics.learn import learn_account

    store = _store()
    known = {(a.account, a.platform) for a in store.accounts()}
    if (account, platform) not in known:
        fail(
            f"no metrics for {account!r} on {platform}; collect or import some first "
            "(contentforge analytics --help)"
        )
    return learn_account(
        store.observations(account, platform), store.account_days(account, platform), account=account,
        platform=platform, timezone=_timezone_for(account) or "UTC",
    )  # fmt: skip


@app.command("collect")
def collect() -> None:
    """Snapshot published posts' metrics from each platform with a token (once per age)."""
    from contentforge.analytics.collect import collect_due
    from contentforge.analytics.factory import build_collectors, snapshot_ages

    settings = context.settings()
    collectors, missing = build_collectors(settings)
    report = collect_due(_store(), collectors, now=datetime.now(UTC), ages=snapshot_ages(settings))
    console.print(f"{report.snapshots} snapshots stored of {report.due} due posts", highlight=False)
    for platform, error in report.errors.items():
        console.print(f"  {platform}: {error}", highlight=False)
    for platform in report.skipped_platforms:
        console.print(
            f"  {platform}: not collected, {missing.get(platform, 'no collector')}", highlight=False
        )


@app.command("import")
def import_file(
    path: Annotated[
        Path, typer.Argument(help="A platform's CSV export (docs/analytics.md lists the columns).")
    ],
    platform: Annotated[str, typer.Option("--platform", "-p", help="instagram, x or tiktok.")],
    account: Annotated[str, typer.Option(help="Account name: the persona id, or any name for history.")],
    exported_at: Annotated[
        str | None, typer.Option(help="ISO time of the export; default: the file's time.")
    ] = None,
) -> None:
    """Import a CSV export; importing the same file again replaces its numbers, never adds them."""
    from contentforge.analytics.csv_import import import_csv

    platform = _platform(platform)
    if not account.strip() or len(account) > 120:
        fail("--account must be 1-120 characters")
    when = None
    if exported_at is not None:
        try:
            when = datetime.fromisoformat(exported_at)
        except ValueError:
            fail(f"--exported-at {exported_at!r} is not an ISO time (e.g. 2026-03-01T09:00+00:00)")
        if when.tzinfo is None:
            fail(f"--exported-at {exported_at!r} needs a UTC offset, e.g. 2026-03-01T09:00+00:00")
    result = import_csv(_store(), path, platform=platform, account=account.strip(), exported_at=when)
    counts = result.counts
    console.print(
        f"{result.rows} rows: {counts.posts_added} new posts, {counts.snapshots_added} new snapshots, "
        f"{counts.snapshots_replaced} replaced, {result.duplicate_rows} repeated rows, "
        f"{result.skipped_too_young} too recent for a first snapshot",
        highlight=False,
    )


@app.command("learn")
def learn() -> None:
    """Learn every account now: weights for the next batches, alerts (and pauses) for reach drops."""
    from contentforge.analytics.learn import learn_all
    from contentforge.analytics.pauses import act_on_alerts
    from contentforge.publishing import build_notifier

    settings = context.settings()
    now = datetime.now(UTC)
    learnings = learn_all(_store(), now=now, timezone_for=_timezone_for)
    for learning in learnings:
        label = " [simulated]" if learning.simulated else ""
        console.print(
            f"{learning.account} on {learning.platform}{label}: {len(learning.frame)} posts, "
            f"best hour {learning.timing.best_hour if learning.timing.enough else learning.timing.reason}, "
            f"{len(learning.drops.drops)} reach drop(s)",
            highlight=False,
        )
    alerts = [a for learning in learnings for a in learning.new_alerts]
    notifier = build_notifier(settings)
    for line in act_on_alerts(
        _store(), alerts, notifier=notifier, pause_hours=settings.analytics_pause_hours, now=now
    ):
        console.print(f"  {line}", highlight=False)


@app.command("report")
def report(
    account: Annotated[str, typer.Argument(help="Account (persona id, import or demo name).")],
    platform: Annotated[str, typer.Option("--platform", "-p")] = "instagram",
    out: Annotated[
        Path | None, typer.Option(help="Write report.md with its plots (PNG) into this folder.")
    ] = None,
) -> None:
    """What the account's data say: best times, what works, reach drops, the engagement model."""
    from contentforge.analytics.report import markdown

    learning = _learn_one(account, _platform(platform))
    if out is None:
        console.print(markdown(learning, images=False), highlight=False)
        return
    _write_report(learning, out)
    console.print(f"report written to {out / 'report.md'}", highlight=False)


def _write_report(learning: AccountLearning, folder: Path) -> None:
    from contentforge.analytics import plots
    from contentforge.analytics.report import markdown

    folder.mkdir(parents=True, exist_ok=True)
    images = {
        "reach.png": plots.reach_over_time(learning),
        "best-times.png": plots.hour_of_week_heatmap(learning),
        "rankings.png": plots.rankings(learning),
    }
    scatter = plots.predicted_vs_actual(learning)
    if scatter is not None:
        images["predicted-vs-actual.png"] = scatter
    for name, data in images.items():
        (folder / name).write_bytes(data)
    text = markdown(learning, images=False) + "\n\n" + "\n".join(f"![{n}]({n})" for n in images)
    (folder / "report.md").write_text(text + "\n", encoding="utf-8")


@app.command("best-times")
def best_times(
    account: Annotated[str, typer.Argument(help="Account (persona id, import or demo name).")],
    platform: Annotated[str, typer.Option("--platform", "-p")] = "instagram",
) -> None:
    """Expected lift by local posting hour, with intervals; or why there is not enough data yet."""
    learning = _learn_one(account, _platform(platform))
    timing = learning.timing
    if not timing.enough:
        console.print(f"{timing.reason}; the configured slots stay", highlight=False)
        return
    table = Table("hour (local)", "expected lift", "90% interval", "posts")
    for hour in sorted(timing.hours, key=lambda h: -h.mean)[:8]:
        table.add_row(
            f"{hour.hour:02d}:00", f"{hour.lift:.2f}", f"{hour.lower:.2f}-{hour.upper:.2f}", str(hour.n)
        )
    console.print(table)
    console.print(timing.reason, highlight=False)


@app.command("predict")
def predict(
    batch_id: Annotated[str, typer.Argument(help="Batch whose planned pieces get a prediction.")],
    platform: Annotated[str, typer.Option("--platform", "-p")] = "instagram",
) -> None:
    """Predicted normalized engagement per planned piece (1.0 = typical), or why there is none."""
    from contentforge.analytics.frames import normalize, posts_frame
    from contentforge.analytics.planned import planned_frame, predict_planned
    from contentforge.analytics.prediction import train_engagement_model
    from contentforge.validation import check_stored_batch_id

    check_stored_batch_id(batch_id)
    platform = _platform(platform)
    repo = context.repository()
    pieces = repo.pieces(batch_id=batch_id)
    if not pieces:
        fail(f"no pieces in batch {batch_id!r}")
    persona = repo.get_persona(pieces[0].persona_id)
    timezone = persona.timezone if persona is not None else "UTC"
    history = normalize(posts_frame(_store().observations(pieces[0].persona_id, platform), timezone=timezone))
    model = train_engagement_model(history)
    console.print(f"{pieces[0].persona_id} on {platform}: model {model.evaluation.reason}", highlight=False)
    if not model.evaluation.usable:
        return
    scheduled = {
        row.piece_id: row.scheduled_for
        for row in context.ledger().list(platform=platform, batch_id=batch_id, limit=None)
        if row.scheduled_for is not None
    }
    frame = planned_frame(
        pieces, platform=platform, timezone=timezone, when_for=scheduled, default_when=datetime.now(UTC),
        image_for=context.services().storage.get,
    )  # fmt: skip
    table = Table("piece", "slot (UTC)", "first hook", "predicted")
    for item in sorted(predict_planned(model, frame), key=lambda p: -(p.predicted or 0.0)):
        shown = f"{item.predicted:.2f}" if item.predicted is not None else "-"
        slot = "unscheduled" if item.piece_id not in scheduled else f"{item.when:%Y-%m-%d %H:%M}"
        table.add_row(item.piece_id, slot, item.hook_style or "-", shown)
    console.print(table)


@app.command("covers")
def covers(
    batch_id: Annotated[str, typer.Argument(help="Batch whose pieces get a cover chosen.")],
    platform: Annotated[str, typer.Option("--platform", "-p")] = "instagram",
) -> None:
    """Pick each piece's cover among its image and its seed variations, record it, and say what a
    weak one lacks compared with the account's top-performing posts (measured)."""
    from contentforge.analytics.cover import choose_covers, record_covers, top_posts_profile
    from contentforge.analytics.frames import normalize, posts_frame
    from contentforge.analytics.prediction import train_engagement_model
    from contentforge.validation import check_stored_batch_id

    check_stored_batch_id(batch_id)
    platform = _platform(platform)
    repo = context.repository()
    pieces = repo.pieces(batch_id=batch_id)
    if not pieces:
        fail(f"no pieces in batch {batch_id!r}")
    account = pieces[0].persona_id
    persona = repo.get_persona(account)
    timezone = persona.timezone if persona is not None else "UTC"
    history = normalize(posts_frame(_store().observations(account, platform), timezone=timezone))
    top_posts_profile(history)  # too little history: one line before any image is read or model trained
    model = train_engagement_model(history)
    scheduled = {
        row.piece_id: row.scheduled_for
        for row in context.ledger().list(platform=platform, batch_id=batch_id, limit=None)
        if row.scheduled_for is not None
    }
    # A batch of variations (``contentforge variations``) chooses among its parents' families.
    in_batch = {p.id for p in pieces}
    parents = sorted(
        {p.parent_piece_id for p in pieces if p.parent_piece_id and p.parent_piece_id not in in_batch}
    )
    roots = [p for p in pieces if p.parent_piece_id is None]
    roots += [parent for parent_id in parents if (parent := repo.get_piece(parent_id)) is not None]
    choices = choose_covers(
        roots, history, variations_of=repo.variations_of, image_for=context.services().storage.get,
        platform=platform, timezone=timezone, when_for=scheduled, default_when=datetime.now(UTC),
        model=model,
    )  # fmt: skip
    record_covers(_store(), choices)
    console.print(
        f"{account} on {platform}: engagement model {model.evaluation.reason}",
        highlight=False,
        soft_wrap=True,
    )
    if not choices:
        console.print("no piece of this batch has a stored image yet")
        return
    console.print(f"scored by {choices[0].candidates[0].method}", highlight=False)
    table = Table("piece", "cover", "candidates", "score", "what the cover lacks")
    for choice in choices:
        cover = choice.candidates[0]
        table.add_row(
            choice.piece_id, cover.name, str(len(choice.candidates)), f"{cover.score:.3f}",
            "; ".join(cover.advice) or "-",
        )  # fmt: skip
    console.print(table)
    for choice in choices:
        for weaker in choice.candidates[1:]:
            console.print(
                f"  {choice.piece_id}: not {weaker.name} ({weaker.score:.3f}): "
                + ("; ".join(weaker.advice) or "close to the top posts, scored lower"),
                highlight=False,
                soft_wrap=True,
            )


@app.command("alerts")
def alerts(account: Annotated[str | None, typer.Argument(help="Only this account.")] = None) -> None:
    """Reach-drop alerts and publishing pauses."""
    store = _store()
    found = store.alerts(account)
    if not found:
        console.print("no alerts")
    for alert in found:
        label = " [simulated]" if alert.simulated else ""
        depth = alert.detail.get("depth")
        console.print(
            f"{alert.starts_on} {alert.account} on {alert.platform}{label}: reach drop"
            + (f" to {depth:.0%} of baseline" if isinstance(depth, float) else "")
            + (f", notified {alert.notified_at:%Y-%m-%d %H:%M}" if alert.notified_at else ", not notified"),
            highlight=False,
        )
    now = datetime.now(UTC)
    for pause in store.pauses(account):
        state = "ended" if pause.resumed_at or pause.paused_until <= now else "ACTIVE"
        console.print(
            f"pause {state}: {pause.persona_id} on {pause.platform} until "
            f"{pause.paused_until:%Y-%m-%d %H:%M} UTC ({pause.reason})",
            highlight=False,
        )


@app.command("resume")
def resume(
    persona: Annotated[str, typer.Argument(help="Persona id whose publishing is paused.")],
    platform: Annotated[str, typer.Option("--platform", "-p")],
) -> None:
    """End a publishing pause now."""
    ended = _store().resume(persona, _platform(platform), by="cli", now=datetime.now(UTC))
    console.print(f"{ended} pause(s) ended" if ended else f"no active pause for {persona!r} on {platform}")


@app.command("demo")
def demo(
    days: Annotated[int, typer.Option(min=30, max=730, help="Simulated days per account.")] = 90,
    accounts: Annotated[int, typer.Option(min=1, max=10, help="Simulated accounts.")] = 2,
    out: Annotated[
        Path | None, typer.Option(help="Where the reports go; default data dir/analytics-demo.")
    ] = None,
) -> None:
    """Fill SIMULATED accounts (planted effects, labelled simulated) and learn from them, offline."""
    from contentforge.analytics.learn import learn_and_store
    from contentforge.analytics.simulator import PlantedEffects, simulate_account

    store = _store()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    folder = out or context.settings().data_dir / "analytics-demo"
    for n in range(accounts):
        name = f"{DEMO_PREFIX}demo-{n + 1}"
        drop = (end - timedelta(days=days // 3)).date() if n == 0 else None
        effects = PlantedEffects(best_hour=(19, 12, 8, 21)[n % 4], drop_start=drop)
        sim = simulate_account(name, days=days, end=end, seed=n, effects=effects, posts_per_day=2)
        store.delete_simulated(name)  # a rerun replaces the demo account instead of doubling it
        store.record(sim.observations)
        store.record_account_days(sim.days)
        learning = learn_and_store(store, name, sim.platform, now=end)  # weights labelled simulated
        _write_report(learning, folder / name)
        console.print(
            f"{name} [SIMULATED]: planted best hour {effects.best_hour:02d}:00, learned "
            f"{learning.timing.best_hour}:00; planted drop {drop or 'none'}, found "
            f"{', '.join(str(d.starts_on) for d in learning.drops.drops) or 'none'} "
            f"-> {folder / name / 'report.md'}",
            highlight=False,
        )
