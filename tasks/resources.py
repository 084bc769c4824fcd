"""Process-wide resources the tasks share: settings, repository, storage, backends.

Built lazily and once per process, so a model or detector loads once and is reused by every piece
of every batch running in this process.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

from contentforge.config import Settings, get_settings
from contentforge.db import Repository, make_engine, migrate
from contentforge.errors import InvalidInput
from contentforge.images.factory import build_image_backend
from contentforge.images.protocol import ImageBackend
from contentforge.moderation import Moderator
from contentforge.moderation.factory import build_moderator
from contentforge.storage import Storage, build_storage
from contentforge.text.hooks import HookWriter
from contentforge.text.llm_hooks import build_hook_writer
from tasks.dispatch import SlotDispatcher, get_dispatcher

_lock = threading.Lock()


def settings() -> Settings:
    return get_settings()


@lru_cache(maxsize=4)
def _repository_for(url: str) -> Repository:
    migrate(url)
    return Repository(make_engine(url))


def repository() -> Repository:
    """The repository on the configured database, migrated to head on first use in this process."""
    with _lock:
        return _repository_for(settings().resolved_database_url)


def storage() -> Storage:
    return build_storage(settings())


def image_backend() -> ImageBackend:
    return build_image_backend(settings())


def moderator() -> Moderator:
    return build_moderator(settings())


_hook_writers: dict[int, HookWriter] = {}


def hook_writer() -> HookWriter:
    """The configured hook writer (LLM chain with offline fallback, or offline), built once per settings."""
    config = settings()
    with _lock:
        if id(config) not in _hook_writers:
            _hook_writers.clear()
            _hook_writers[id(config)] = build_hook_writer(config)
        return _hook_writers[id(config)]


def dispatcher() -> SlotDispatcher:
    config = settings()
    return get_dispatcher(config.concurrency_limit_name, config.generation_slots)


def moderation_dispatcher() -> SlotDispatcher:
    config = settings()
    return get_dispatcher(config.moderation_concurrency_limit_name, config.moderation_concurrency)


def c2pa_credentials() -> tuple[Path, Path] | None:
    """(certificate chain, private key) when C2PA signing is configured, else None."""
    config = settings()
    if config.c2pa_cert_path is None and config.c2pa_key_path is None:
        return None
    if config.c2pa_cert_path is None or config.c2pa_key_path is None:
        raise InvalidInput(
            "C2PA signing needs both CONTENTFORGE_C2PA_CERT_PATH and CONTENTFORGE_C2PA_KEY_PATH"
        )
    return config.c2pa_cert_path, config.c2pa_key_path
