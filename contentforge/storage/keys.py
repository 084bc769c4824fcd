"""Storage keys built from validated ids only, so no input can escape the content prefix."""

from __future__ import annotations

import re

from contentforge.errors import InvalidInput

_SAFE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SAFE_EXT = re.compile(r"^[a-z0-9]{1,5}$")


def content_key(persona_id: str, piece_id: str, ext: str = "png") -> str:
    """``content/{persona_id}/{piece_id}.{ext}``; raises InvalidInput for anything but a safe slug."""
    for label, value in (("persona id", persona_id), ("piece id", piece_id)):
        if not _SAFE_ID.fullmatch(value):
            raise InvalidInput(f"{label} {value!r} is not a safe slug (a-z, 0-9, '-', '_')")
    if not _SAFE_EXT.fullmatch(ext):
        raise InvalidInput(f"file extension {ext!r} is not allowed")
    return f"content/{persona_id}/{piece_id}.{ext}"
