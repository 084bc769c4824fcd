"""Process-wide resources the tasks share: settings, services (repository, stores, storage), backends.

Built lazily and once per process, so a model or detector loads once and is reused by every piece
of every batch running in this process. The data is reached through ``contentforge.services``: one
``Services`` per settings object, on a repository opened (and migrated) once per database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from prefect.settings import PREFECT_API_URL

from contentforge.config import Settings, get_settings
from contentforge.db import Repository
from contentforge.errors import InvalidInput
from contentforge.images.cpu_sizing import local_generation_limit
from contentforge.images.factory import build_image_backend
from contentforge.images.protocol import ImageBackend
from contentforge.moderation import Moderator
from contentforge.moderation.factory import build_moderator
from contentforge.services import Services
from contentforge.storage import Storage
from contentforge.text.hooks import HookWriter
from contentforge.text.llm_hooks import build_hook_writer
from contentforge.text.providers.factory import build_text_provider
from contentforge.text.providers.offline import OfflineEngine
from tasks.bootstrap import create_limit_if_absent
from tasks.dispatch import SlotDispatcher, get_dispatcher

T = TypeVar("T")

_lock = threading.Lock()


def settings() -> Settings:
    return get_settings()


@lru_cache(maxsize=4)
def _repository_for(url: str) -> Repository:
    return Repository.open(url)


_services: list[Services] = []


def services() -> Services:
    """The services of the configured settings; the database is migrated on first use in this process."""
    config = settings()
    with _lock:
        if not _services or _services[0].settings is not config:
            repo = _repository_for(config.resolved_database_url)
            _services[:] = [Services.from_settings(config, repository=repo)]
        return _services[0]


def repository() -> Repository:
    """The repository on the configured database, migrated to head on first use in this process."""
    return services().repository


def storage() -> Storage:
    return services().storage


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
    """Image generation's slots: this process holds at most as many as its backend can run at once."""
    config = settings()
    slots = local_generation_limit(image_backend(), config.generation_slots)
    return get_dispatcher(config.concurrency_limit_name, slots, linger_s=0.05)


def moderation_dispatcher() -> SlotDispatcher:
    config = settings()
    return get_dispatcher(config.moderation_concurrency_limit_name, config.moderation_concurrency)


def llm_dispatcher() -> SlotDispatcher:
    config = settings()
    return get_dispatcher(config.llm_concurrency_limit_name, config.llm_concurrency)


_llm_in_use: dict[int, bool] = {}
_llm_limits_ready: set[tuple[str, str]] = set()


def llm_in_use() -> bool:
    """Whether the configured text chain can reach a model (anything but the offline engine alone)."""
    config = settings()
    with _lock:
        if id(config) not in _llm_in_use:
            _llm_in_use.clear()
            if config.text_provider_names == ["offline"]:
                _llm_in_use[id(config)] = False
            else:
                chain = build_text_provider(config)
                _llm_in_use[id(config)] = not all(isinstance(p, OfflineEngine) for p in chain.providers)
        return _llm_in_use[id(config)]


def run_llm(fn: Callable[[], T]) -> T:
    """Run ``fn``, which calls a model, inside a slot of the LLM limit (one per provider chain).

    An offline-only chain pays nothing and waits for nothing: ``fn`` runs directly. The limit is
    created where absent (the batch flow's bootstrap step creates it too), so strategy flows work on
    a server nobody bootstrapped.
    """
    if not llm_in_use():
        return fn()
    config = settings()
    key = (config.llm_concurrency_limit_name, str(PREFECT_API_URL.value()))
    if key not in _llm_limits_ready:
        create_limit_if_absent(config.llm_concurrency_limit_name, config.llm_concurrency)
        _llm_limits_ready.add(key)
    return llm_dispatcher().run(fn)


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
