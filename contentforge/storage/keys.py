"""Storage keys built from validated ids only, so no input can escape the content prefix."""

from __future__ import annotations

import re

from contentforge.errors import InvalidInput

_SAFE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SAFE_EXT = re.compile(r"^[a-z0-9]{1,5}$")
# One path segment of a key: starts with a letter or digit (so never '.', '..' or a hidden name).
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_KEY_LENGTH = 512


def _check_id(label: str, value: str) -> None:
    if not _SAFE_ID.fullmatch(value):
        raise InvalidInput(f"{label} {value!r} is not a safe slug (a-z, 0-9, '-', '_')")


def content_key(persona_id: str, piece_id: str, ext: str = "png") -> str:
    """``content/{persona_id}/{piece_id}.{ext}``; raises InvalidInput for anything but a safe slug."""
    _check_id("persona id", persona_id)
    _check_id("piece id", piece_id)
    if not _SAFE_EXT.fullmatch(ext):
        raise InvalidInput(f"file extension {ext!r} is not allowed")
    return f"content/{persona_id}/{piece_id}.{ext}"


def rendition_key(persona_id: str, piece_id: str, platform: str, ext: str) -> str:
    """``content/{persona_id}/{piece_id}.{platform}.{ext}``: a platform rendition next to its original."""
    _check_id("platform", platform)
    original = content_key(persona_id, piece_id, ext)
    return f"{original[: -len(ext) - 1]}.{platform}.{ext}"


def validate_key(key: str) -> str:
    """Return ``key`` if it is a relative, '/'-separated path of safe segments; raise InvalidInput otherwise.

    Refuses absolute paths, ``..`` and ``.`` segments, empty segments (``a//b``), backslashes, and any
    character outside ``A-Z a-z 0-9 . _ -``, so a key can never address anything outside its prefix.
    """
    if not isinstance(key, str) or not key:
        raise InvalidInput("storage key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"storage key is longer than {MAX_KEY_LENGTH} characters")
    if key.startswith("/"):
        raise InvalidInput(f"storage key {key!r} is absolute; keys are relative to the storage root")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _SAFE_SEGMENT.fullmatch(segment):
            raise InvalidInput(
                f"storage key {key!r} has an unsafe segment {segment!r} (use a-z, 0-9, '.', '_', '-')"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """A key prefix: empty, or safe segments ending in '/' (added when missing)."""
    stripped = prefix.strip().strip("/")
    if not stripped:
        return ""
    validate_key(stripped)
    return stripped + "/"
