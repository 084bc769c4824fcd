"""The factory that picks the configured storage backend.

Kept apart from ``storage.protocol``, which the backends import: the protocol module imports no backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contentforge.errors import InvalidInput
from contentforge.storage.local import LocalStorage
from contentforge.storage.protocol import Storage

if TYPE_CHECKING:
    from contentforge.config import Settings


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
    return LocalStorage(settings.data_dir, public_base_url=settings.public_base_url)
