"""``Services.from_settings``: the one way a front end reaches the data.

The CLI, the API and the Prefect tasks each build one ``Services`` from their settings and read and
write only through it: the repository (the database migrated to head once, when it is built) and
the stores that share its session policy (the review queue, the strategy store and the publication
ledger), plus the configured storage. The costly parts (the ledger's caption judge loads the
moderation backends; S3 storage makes a client) are built on first use and then kept, so one
``Services`` can be shared by every thread of a process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, cast

from contentforge.db.repository import Repository
from contentforge.db.sessions import SessionPolicy

if TYPE_CHECKING:
    from contentforge.config import Settings
    from contentforge.moderation.review import ReviewQueue
    from contentforge.publishing.ledger import PublicationLedger
    from contentforge.storage import Storage
    from contentforge.strategy.store import StrategyStore

T = TypeVar("T")


class Services:
    """The repository and the stores beside it, on one database and one session policy."""

    def __init__(self, settings: Settings, repository: Repository) -> None:
        self.settings = settings
        self.repository = repository
        self._lock = threading.Lock()
        self._built: dict[str, object] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, repository: Repository | None = None) -> Services:
        """The services of ``settings``; the database is migrated to head first (a no-op when it is).

        ``repository``: one already opened on ``settings``' database (a process that keeps one per
        database passes it, so the database is not migrated again).
        """
        return cls(settings, repository or Repository.open(settings.resolved_database_url))

    @property
    def sessions(self) -> SessionPolicy:
        """The session policy every store here uses (``contentforge.db.sessions``)."""
        return self.repository.sessions

    @property
    def review(self) -> ReviewQueue:
        """The human review queue (pieces in ``needs_review``)."""
        from contentforge.moderation.review import ReviewQueue

        return self._once("review", lambda: ReviewQueue(self.sessions))

    @property
    def strategy(self) -> StrategyStore:
        """Brands, topics, blog and social posts."""
        from contentforge.strategy.store import StrategyStore

        return self._once("strategy", lambda: StrategyStore(self.sessions))

    @property
    def ledger(self) -> PublicationLedger:
        """The publication ledger with the configured caption moderation (built on first use)."""
        from contentforge.publishing.factory import build_ledger

        return self._once("ledger", lambda: build_ledger(self.settings, self.sessions))

    @property
    def storage(self) -> Storage:
        """The configured image storage (local files or S3; built on first use)."""
        from contentforge.storage import build_storage

        return self._once("storage", lambda: build_storage(self.settings))

    def _once(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return cast(T, self._built[name])
