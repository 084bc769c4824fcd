"""A disk cache of remote moderation responses, keyed by what was moderated.

A remote moderation call costs time, rate-limit budget and sometimes money, and a rerun of a batch
moderates the very same bytes again. The key is the sha256 of the model name, the image bytes and
every text, so any change to any of them is a miss, and identical content is never sent twice.
Entries are small JSON files written atomically (``contentforge.files``), so concurrent moderation
threads and a crash mid-write never leave a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contentforge.files import atomic_write_text


def content_key(model: str, image_bytes: bytes | None, texts: Sequence[str]) -> str:
    """sha256 over the model, the image bytes and the texts, each length-prefixed (no ambiguity)."""
    digest = hashlib.sha256()
    parts: list[bytes] = [model.encode(), image_bytes or b"", *(t.encode() for t in texts)]
    digest.update(str(len(parts)).encode() + b"\0")
    for part in parts:
        digest.update(str(len(part)).encode() + b":")
        digest.update(part)
    return digest.hexdigest()


class ModerationCache:
    """JSON entries under ``directory/<key[:2]>/<key>.json``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are sha256 hex digests, got {key!r}")
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or ``None``; an unreadable entry counts as a miss."""
        try:
            value = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        atomic_write_text(self._path(key), json.dumps(value, sort_keys=True))
