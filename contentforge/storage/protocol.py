"""The storage protocol every backend (local disk, S3/R2) implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from contentforge.config import Settings


@dataclass(frozen=True)
class StoredObject:
    """What a put produced; ``written`` is False when identical bytes were already there."""

    key: str
    url: str
    sha256: str
    size: int
    written: bool


class Storage(Protocol):
    name: str

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Store ``data`` under ``key`` idempotently: the same bytes are never written twice."""
        ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def url_for(self, key: str) -> str: ...


def build_storage(settings: Settings) -> Storage:
    """The configured storage backend (local disk until the S3 backend lands)."""
    from contentforge.storage.local import LocalStorage

    return LocalStorage(settings.data_dir, public_base_url=settings.public_base_url)
