"""Local-disk storage: files under the data directory, written atomically and idempotently."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from contentforge.errors import InvalidInput
from contentforge.files import atomic_write_bytes
from contentforge.storage.protocol import StoredObject


class LocalStorage:
    """Stores objects as files under ``root``; URLs are ``file://`` or under a configured base URL."""

    name = "local"

    def __init__(self, root: Path, public_base_url: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None

    def path_for(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidInput(f"storage key {key!r} escapes the storage root")
        return path

    def url_for(self, key: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{key}"
        return self.path_for(key).as_uri()

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def get(self, key: str) -> bytes:
        return self.path_for(key).read_bytes()

    def put(
        self, key: str, data: bytes, content_type: str, *, metadata: Mapping[str, str] | None = None
    ) -> StoredObject:
        """Write atomically (``contentforge.files``) so a crash never leaves half an image.

        ``metadata`` is accepted for protocol compatibility and not written: on local disk the
        database row and the provenance inside the image already carry it.
        """
        path = self.path_for(key)
        digest = hashlib.sha256(data).hexdigest()
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == digest:
            return StoredObject(key, self.url_for(key), digest, len(data), written=False)
        atomic_write_bytes(path, data)
        return StoredObject(key, self.url_for(key), digest, len(data), written=True)
