"""Local storage: safe keys, atomic idempotent writes, URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from contentforge.errors import InvalidInput
from contentforge.storage import LocalStorage, content_key


def test_content_key_layout() -> None:
    assert content_key("mia-fit", "abc-001", "png") == "content/mia-fit/abc-001.png"


@pytest.mark.parametrize("persona_id", ["../etc", "Mia", "a/b", "", "x" * 65])
def test_content_key_refuses_unsafe_ids(persona_id: str) -> None:
    with pytest.raises(InvalidInput, match="persona id"):
        content_key(persona_id, "abc-001")


def test_put_is_idempotent_and_atomic(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    first = storage.put("content/p/one.png", b"image-bytes", "image/png")
    again = storage.put("content/p/one.png", b"image-bytes", "image/png")
    changed = storage.put("content/p/one.png", b"other-bytes", "image/png")
    assert (first.written, again.written, changed.written) == (True, False, True)
    assert storage.get("content/p/one.png") == b"other-bytes"
    assert first.sha256 == again.sha256 != changed.sha256
    leftovers = [p.name for p in (tmp_path / "content/p").iterdir() if p.name != "one.png"]
    assert leftovers == []


def test_urls_and_traversal(tmp_path: Path) -> None:
    assert LocalStorage(tmp_path).url_for("content/p/x.png").startswith("file://")
    cdn = LocalStorage(tmp_path, public_base_url="https://cdn.example.com/")
    assert cdn.url_for("content/p/x.png") == "https://cdn.example.com/content/p/x.png"
    with pytest.raises(InvalidInput, match="escapes"):
        cdn.put("../outside.png", b"x", "image/png")
