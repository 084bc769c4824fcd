"""The storage protocol every backend (local disk, S3/R2) implements; ``storage.factory`` picks one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from contentforge.errors import ContentForgeError


class StorageError(ContentForgeError):
    """The storage backend refused or failed a request (bucket missing, access denied, network)."""


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

    def put(
        self, key: str, data: bytes, content_type: str, *, metadata: Mapping[str, str] | None = None
    ) -> StoredObject:
        """Store ``data`` under ``key`` idempotently: the same bytes are never written twice.

        ``metadata`` (persona, piece, tier, batch index...) travels with the object where the backend
        can keep it (S3 user metadata); a backend without object metadata accepts and ignores it.
        """
        ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def url_for(self, key: str) -> str: ...
