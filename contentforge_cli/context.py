"""What every command group shares: the console, one-line failures, the settings and the stores.

Output never interprets markup: the console prints user text (persona names, ids, file names,
hooks) literally, and styling is applied with ``Text``/``style=``, never ``[tags]``. The stores are
built here and nowhere else; their modules are imported when first used, so ``--help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from contentforge.validation import load_settings

if TYPE_CHECKING:
    from contentforge.config import Settings
    from contentforge.db import Repository
    from contentforge.moderation.review import ReviewQueue
    from contentforge.publishing.ledger import PublicationLedger
    from contentforge.strategy.store import StrategyStore

console = Console(markup=False)  # user text is printed as it is: "[red]x" stays "[red]x"


def fail(message: str) -> NoReturn:
    """One line (never wrapped, never interpreted as markup), exit code 2."""
    console.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def warn(message: str) -> None:
    console.print(Text.assemble(("warning: ", "yellow"), message), highlight=False, soft_wrap=True)


def settings() -> Settings:
    """The settings; ``InvalidSettings`` (a ``ContentForgeError``) names the bad variable."""
    return load_settings()


def repository() -> Repository:
    """The repository on the configured database, migrated to head first."""
    from contentforge.db import Repository, make_engine, migrate

    url = settings().resolved_database_url
    migrate(url)
    return Repository(make_engine(url))


def strategy_store(repo: Repository | None = None) -> StrategyStore:
    """Brands, topics, blog and social posts, on ``repo``'s database (default: a new repository)."""
    from contentforge.strategy.store import StrategyStore

    return StrategyStore((repo or repository()).engine)


def ledger() -> PublicationLedger:
    """The publication ledger, with the configured moderation judging captions (as the tasks do)."""
    from contentforge.publishing.factory import build_ledger

    return build_ledger(settings())


def review_queue() -> ReviewQueue:
    from contentforge.moderation.review import ReviewQueue

    return ReviewQueue.from_settings(settings())
