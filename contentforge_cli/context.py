"""What every command group shares: the console, one-line failures, the settings and the stores.

Output never interprets markup: the console prints user text (persona names, ids, file names,
hooks) literally, and styling is applied with ``Text``/``style=``, never ``[tags]``. The stores come
from one ``contentforge.services.Services`` per settings, built here and nowhere else (the database is
migrated once, when it is first needed); their modules are imported when first used, so ``--help``
stays fast.
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
    from contentforge.services import Services
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


_services: list[Services] = []


def services() -> Services:
    """The data services of the current settings: repository, stores and storage (built once each)."""
    from contentforge.services import Services

    config = settings()
    if not _services or _services[0].settings is not config:
        _services[:] = [Services.from_settings(config)]
    return _services[0]


def repository() -> Repository:
    """The repository on the configured database, migrated to head first."""
    return services().repository


def strategy_store(repo: Repository | None = None) -> StrategyStore:
    """Brands, topics, blog and social posts, on ``repo``'s database (default: the configured one)."""
    from contentforge.strategy.store import StrategyStore

    return services().strategy if repo is None else StrategyStore(repo.sessions)


def ledger() -> PublicationLedger:
    """The publication ledger, with the configured moderation judging captions (as the tasks do)."""
    return services().ledger


def review_queue() -> ReviewQueue:
    return services().review
