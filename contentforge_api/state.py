"""What every route shares (settings, the data services, launcher) and the auth dependencies."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contentforge.config import Settings
from contentforge.db import Repository
from contentforge.moderation import Moderator
from contentforge.moderation.factory import build_moderator
from contentforge.moderation.review import ReviewQueue
from contentforge.services import Services
from contentforge.storage import Storage
from contentforge.text.hooks import HookWriter
from contentforge.text.llm_hooks import build_hook_writer
from contentforge_api.auth import Identity, TokenAuth
from contentforge_api.errors import ApiError
from contentforge_api.jobs import JobStore
from contentforge_api.launcher import BatchLauncher
from contentforge_api.queries import ContentQueries, StoredImage

CONTENT_ROUTE = "/content"


@dataclass
class ApiState:
    services: Services
    auth: TokenAuth
    launcher: BatchLauncher
    queries: ContentQueries = field(init=False)
    jobs: JobStore = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _hook_writer: HookWriter | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.queries = ContentQueries(self.services.sessions, self.image_url)
        self.jobs = JobStore(self.launcher, self.services.sessions)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def repo(self) -> Repository:
        return self.services.repository

    @property
    def review(self) -> ReviewQueue:
        return self.services.review

    def storage(self) -> Storage:
        return self.services.storage

    def hook_writer(self) -> HookWriter:
        with self._lock:
            if self._hook_writer is None:
                self._hook_writer = build_hook_writer(self.settings)
            return self._hook_writer

    def moderator(self) -> Moderator:
        return build_moderator(self.settings)  # cached per moderation settings by the factory

    def image_url(self, piece: StoredImage) -> str | None:
        """Local files are served by this API under /content (token required); S3 gives its own URL."""
        if not piece.storage_key:
            return None
        if self.settings.storage_backend == "local":
            return f"{CONTENT_ROUTE}/{piece.storage_key.removeprefix('content/')}"
        return self.storage().url_for(piece.storage_key)


def state_of(request: Request) -> ApiState:
    return request.app.state.contentforge


async def api_state(request: Request) -> ApiState:
    """``state_of`` as a dependency. Async (it awaits nothing) so that FastAPI calls it on the event
    loop: a plain ``def`` dependency costs every request a round trip through the threadpool."""
    return state_of(request)


_bearer = HTTPBearer(auto_error=False, description="CONTENTFORGE_API_TOKEN (or the read-only token)")


async def require_read(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Identity:
    """Any valid token. (``_credentials`` only publishes the scheme in OpenAPI; TokenAuth checks.)"""
    return state_of(request).auth.identify(request)  # a hash and two comparisons: fine on the loop


async def require_write(identity: Annotated[Identity, Depends(require_read)]) -> Identity:
    if not identity.can_write:
        raise ApiError(403, "this token is read-only; use CONTENTFORGE_API_TOKEN to change anything")
    return identity


State = Annotated[ApiState, Depends(api_state)]
Reader = Annotated[Identity, Depends(require_read)]
Writer = Annotated[Identity, Depends(require_write)]
