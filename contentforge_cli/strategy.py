"""From brand to posts: ``brand research``/``show``, ``topics plan``, ``blog write``, ``social derive``.

Each command checks its input before it starts the Prefect server, then runs its flow
(research-brand, plan-topics, write-blog-post, derive-social-posts); see docs/strategy.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from contentforge.config import Settings
from contentforge_cli import context
from contentforge_cli.context import console, fail, warn

brand_app = typer.Typer(
    help="Brand research: a sourced BrandDNA from websites and documents.", no_args_is_help=True
)
topics_app = typer.Typer(help="Monthly topic plans for a persona (flow plan-topics).", no_args_is_help=True)
blog_app = typer.Typer(
    help="Long-form blog posts from approved topics (flow write-blog-post).", no_args_is_help=True
)
social_app = typer.Typer(
    help="Platform captions from approved blog posts (flow derive-social-posts).", no_args_is_help=True
)

_TimeoutOption = Annotated[
    int | None,
    typer.Option(
        "--timeout",
        min=1,
        help="Seconds to wait for the approval in the UI (CONTENTFORGE_APPROVAL_TIMEOUT_S).",
    ),
]


def _dna_table(dna: Any) -> Table:
    from contentforge.domain.strategy import DNA_FIELDS

    table = Table(
        "field", "value", "how", "source", title=f"{dna.brand}: {len(dna.known_fields())}/{len(DNA_FIELDS)}"
    )
    for name in DNA_FIELDS:
        field = dna.field(name)
        table.add_row(name, field.display()[:80], str(field.method or ""), field.source or "")
    return table


def _waiting_note(settings: Settings, timeout: int | None, what: str) -> None:
    wait = timeout or settings.approval_timeout_s
    console.print(
        f"the flow pauses for {what} approval in the Prefect UI (up to {wait} s)",
        highlight=False,
        style="dim",
    )


@brand_app.command("research")
def brand_research(
    name: Annotated[str, typer.Argument(help="The brand's name.")],
    url: Annotated[list[str] | None, typer.Option("--url", "-u", help="Website URL (repeatable).")] = None,
    doc: Annotated[list[Path] | None, typer.Option("--doc", "-d", help="A .txt/.md/.html/.pdf file.")] = None,
) -> None:
    """Research a brand (flow research-brand) and print its DNA; each field with its source or unknown."""
    from contentforge.research.documents import load_document
    from contentforge.research.fetch import FetchLimits, SafeFetcher

    settings = context.settings()
    urls, docs = list(url or []), list(doc or [])
    if not urls and not docs:
        fail("give at least one --url or --doc")
    fetcher = SafeFetcher(FetchLimits.from_settings(settings))
    for u in urls:
        fetcher.check_url(u)  # refused addresses fail before the server starts
    for d in docs:
        load_document(d)
    from contentforge_cli.runtime import connect

    connect(settings)
    from flows.research_brand import research_brand

    summary = research_brand(name, urls, [str(d.resolve()) for d in docs])
    _, _, dna = context.strategy_store().get_brand(summary["brand_id"])
    console.print(_dna_table(dna))
    for warning in summary["warnings"]:
        warn(warning)
    console.print(
        f"saved brand {summary['brand_id']}; next: python flows/create_personas.py {summary['brand_id']}"
    )


@brand_app.command("show")
def brand_show(name: Annotated[str, typer.Argument(help="Brand id or name.")]) -> None:
    """Print a researched brand's DNA."""
    _, _, dna = context.strategy_store().get_brand(name)
    if dna is None:
        fail(f"brand {name!r} has no DNA yet; run `contentforge brand research`")
    console.print(_dna_table(dna))


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
    from contentforge.strategy.topics import parse_month

    settings = context.settings()
    parse_month(month)
    repo = context.repository()
    found = resolve_persona(repo, persona, save=False)
    if brand is not None:
        context.strategy_store(repo).get_brand(brand)
    repo.upsert_persona(found)  # a persona file is saved once the whole request is valid
    from contentforge_cli.runtime import connect

    connect(settings)
    from flows.plan_topics import plan_topics

    _waiting_note(settings, timeout, "the topics'")
    summary = plan_topics(found.id, month, brand=brand, count=count, seed=seed, timeout_s=timeout)
    console.print(
        f"{len(summary['topics'])} topics for {found.id} {month}: {len(summary['approved'])} approved, "
        f"{len(summary['rejected'])} rejected{' (timed out)' if summary['timed_out'] else ''}",
        highlight=False,
    )
    for topic_id in summary["approved"]:
        console.print(f"approved {topic_id}; next: contentforge blog write {topic_id}", highlight=False)
    for error in summary["errors"]:
        warn(error)


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
    from contentforge.domain.strategy import ApprovalStatus

    settings = context.settings()
    topic = context.strategy_store().get_topic(topic_id)
    if topic.status is not ApprovalStatus.approved:
        fail(f"topic {topic_id} is {topic.status.value}; approve it first (contentforge topics plan)")
    from contentforge_cli.runtime import connect

    connect(settings)
    from flows.write_blog_post import write_blog_post

    _waiting_note(settings, timeout, "the draft's")
    summary = write_blog_post(topic_id, target_pages=pages, seed=seed, timeout_s=timeout)
    console.print(
        f"post {summary['post_id']}: {summary['status']}, {summary['words']} words "
        f"({summary['pages']:.1f} pages){' (timed out)' if summary['timed_out'] else ''}",
        highlight=False,
    )
    if summary.get("kind") == "brief":
        warn(
            "no model is configured, so this is a BRIEF (facts, sections, call to action), not a post: "
            "a full 4-10 page draft needs a model (CONTENTFORGE_TEXT_PROVIDERS), or a writer"
        )
    gate = summary.get("quality_gate") or {}
    if gate and not gate.get("passed"):
        warn(f"quality gate: {gate.get('status')}: " + "; ".join(i["detail"] for i in gate.get("issues", [])))
    if summary.get("error"):
        warn(summary["error"])
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
    from contentforge.domain import Platform
    from contentforge.domain.strategy import ApprovalStatus

    settings = context.settings()
    platforms = list(platform or [])
    known = [p.value for p in Platform]
    if unknown := [p for p in platforms if p not in known]:
        fail(f"unknown platform {unknown[0]!r}; use one of {', '.join(known)}")
    post = context.strategy_store().get_blog_post(post_id)
    if post.status is not ApprovalStatus.approved:
        fail(f"blog post {post_id} is {post.status.value}; approve it first (contentforge blog write)")
    from contentforge_cli.runtime import connect

    connect(settings)
    from flows.derive_social_posts import derive_social_posts

    summary = derive_social_posts(post_id, platforms or None)
    for name, caption in summary["posts"].items():
        console.print(name, style="bold", highlight=False)
        console.print(caption, highlight=False)
        console.print()
