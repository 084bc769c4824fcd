"""contentforge.files: a target is complete or absent (or its old self) after a failure mid-write."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from contentforge import files
from contentforge.files import atomic_write_bytes, atomic_write_text, atomic_writer


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_writes_create_parents_and_replace(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "post.json"
    atomic_write_text(target, '{"caption": "café ☕"}')
    assert target.read_text(encoding="utf-8") == '{"caption": "café ☕"}'
    atomic_write_bytes(target, b"\x89PNG new")
    assert target.read_bytes() == b"\x89PNG new"
    assert leftovers(target.parent) == []


def test_exception_mid_write_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "image.png"
    target.write_bytes(b"old image")
    with pytest.raises(ConnectionError), atomic_writer(target) as handle:
        handle.write(b"half of a new im")
        raise ConnectionError("stream dropped")
    assert target.read_bytes() == b"old image"
    assert leftovers(tmp_path) == []


def test_exception_mid_write_leaves_a_new_target_absent(tmp_path: Path) -> None:
    target = tmp_path / "entry.json"
    with pytest.raises(RuntimeError), atomic_writer(target) as handle:
        handle.write(b'{"flagged": fal')
        raise RuntimeError("checksum mismatch")
    assert not target.exists() and leftovers(tmp_path) == []


def test_failed_fsync_or_replace_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "post.json"
    target.write_text("old")

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(target, "new")
    monkeypatch.undo()

    def cross_device(src: str, dst: str) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(files.os, "replace", cross_device)
    with pytest.raises(OSError, match="cross-device"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and leftovers(tmp_path) == []


@pytest.mark.parametrize("existing", [b"old complete content", None])
def test_a_process_killed_mid_write_leaves_old_or_absent(tmp_path: Path, existing: bytes | None) -> None:
    """A process that dies (no cleanup, no finally) halfway through leaves no partial target."""
    target = tmp_path / "out.bin"
    if existing is not None:
        target.write_bytes(existing)
    script = textwrap.dedent(
        f"""
        import os
        from contentforge.files import atomic_writer
        with atomic_writer({str(target)!r}) as handle:
            handle.write(b"partial " * 1000)
            handle.flush()
            os._exit(9)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=60, env={**os.environ})
    assert done.returncode == 9
    if existing is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == existing
    # The dead writer's temporary file is hidden beside the target, never under the target's name.
    assert all(name.startswith(".out.bin.") and name.endswith(".tmp") for name in leftovers(tmp_path))
