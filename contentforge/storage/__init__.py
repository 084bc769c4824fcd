"""Where finished images live: a small protocol, local-disk and S3/R2 backends, and key building."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contentforge.storage.factory import build_storage
from contentforge.storage.keys import content_key, rendition_key, validate_key
from contentforge.storage.local import LocalStorage
from contentforge.storage.protocol import Storage, StorageError, StoredObject

if TYPE_CHECKING:
    from contentforge.storage.s3 import PutItem, S3Storage

__all__ = [
    "LocalStorage",
    "PutItem",
    "S3Storage",
    "Storage",
    "StorageError",
    "StoredObject",
    "build_storage",
    "content_key",
    "rendition_key",
    "validate_key",
]


def __getattr__(name: str) -> Any:
    # The S3 backend imports boto3, which is slow to import (docs/benchmarks.md); only pay for it when used.
    if name in ("S3Storage", "PutItem"):
        from contentforge.storage import s3

        return getattr(s3, name)
    raise AttributeError(f"module 'contentforge.storage' has no attribute {name!r}")
