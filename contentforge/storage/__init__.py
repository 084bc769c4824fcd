"""Where finished images live: a small protocol, a local-disk backend, and key building."""

from contentforge.storage.keys import content_key
from contentforge.storage.local import LocalStorage
from contentforge.storage.protocol import Storage, StoredObject, build_storage

__all__ = ["LocalStorage", "Storage", "StoredObject", "build_storage", "content_key"]
