"""Atomic file writes: a reader sees the old file or the whole new one, never half of it.

The one place ContentForge writes a file that others read while it may be rewritten (stored
images, outbox posts, moderation cache entries, downloads). The bytes go to a temporary file in
the same directory (so ``os.replace`` is a rename on one filesystem), are flushed and fsynced, and
the temporary file then replaces the target; the directory is fsynced too where the platform
allows, so the rename survives a power cut. Any failure before the rename removes the temporary
file and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_writer"]


@contextlib.contextmanager
def atomic_writer(path: Path | str) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces ``path`` when the block ends without an exception.

    An exception inside the block (a failed checksum, a dropped stream, a crash) removes the
    temporary file and re-raises; ``path`` keeps its previous content, or stays absent.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, encoded with ``encoding``."""
    atomic_write_bytes(path, text.encode(encoding))


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; a platform without directory handles (Windows) skips it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
