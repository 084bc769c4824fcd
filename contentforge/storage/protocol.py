"""The storage protocol every backend (local disk, S3/R2) implements, and the factory that picks one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from contentforge.errors import ContentForgeError, InvalidInput

if TYPE_CHECKING:
    from contentforge.config import Settings


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


def build_storage(settings: Settings) -> Storage:
    """The configured backend: ``local`` (default) or ``s3`` (AWS S3, Cloudflare R2, MinIO).

    Everything is validated here, before any upload: a missing bucket or half a key pair fails with a
    message naming the setting. Building the S3 client makes no network call.
    """
    backend = getattr(settings, "storage_backend", "local")
    if backend == "s3":
        if not settings.s3_bucket:
            raise InvalidInput(
                "storage backend is s3 but no bucket is set: set CONTENTFORGE_S3_BUCKET "
                "(or CONTENTFORGE_STORAGE_BACKEND=local)"
            )
        from contentforge.storage.s3 import S3Storage

        return S3Storage(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            addressing_style=settings.s3_addressing_style,
            prefix=settings.s3_prefix,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            public_base_url=settings.public_base_url,
            presign_expiry_s=settings.s3_presign_expiry_s,
            max_workers=settings.s3_max_workers,
        )
    if backend != "local":
        raise InvalidInput(f"unknown storage backend {backend!r} (use local or s3)")
    from contentforge.storage.local import LocalStorage

    return LocalStorage(settings.data_dir, public_base_url=settings.public_base_url)
