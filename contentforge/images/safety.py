"""Refuse unsafe or broken model files before any of them is loaded.

Pickle checkpoints (.ckpt/.bin/.pt/.pth/.pkl) can run arbitrary code when loaded, so they are refused
unless the user opts in. LoRA files are checked up front so that a persona with a broken LoRA fails
with a one-line message instead of a stack trace in the middle of a batch.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from safetensors import safe_open

from contentforge.domain import LoraSpec
from contentforge.errors import InvalidLora, UnsafeCheckpoint

PICKLE_SUFFIXES = frozenset({".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle"})
SAFE_SUFFIXES = frozenset({".safetensors"})
DEFAULT_LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
"""The file diffusers looks for in a LoRA folder when no weight name is given."""

_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def check_model_file(path: Path, allow_pickle: bool) -> None:
    """Raise ``UnsafeCheckpoint`` for a pickle checkpoint unless pickles are explicitly allowed."""
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise UnsafeCheckpoint(
            f"{path}: pickle checkpoint ({path.suffix}) refused because loading it can run arbitrary code; "
            "convert it to .safetensors, or set CONTENTFORGE_ALLOW_PICKLE=1 if you trust it"
        )


def looks_local(source: str) -> bool:
    """Whether ``source`` names a local file or folder rather than a hub id like ``owner/name``.

    A hub id has exactly one slash and no file suffix; anything that exists, is absolute or relative
    (``./``, ``~``), has a model file suffix or more than one slash is treated as local.
    """
    path = Path(source).expanduser()
    if path.exists() or source.startswith(("/", ".", "~")) or "\\" in source:
        return True
    if path.suffix.lower() in PICKLE_SUFFIXES | SAFE_SUFFIXES:
        return True
    return source.count("/") != 1


def lora_file(spec: LoraSpec) -> Path:
    """The local file a LoRA spec points at: the file itself, or ``weight_name`` inside a folder."""
    path = Path(spec.source).expanduser()
    if path.is_dir():
        return path / (spec.weight_name or DEFAULT_LORA_WEIGHT_NAME)
    return path


def validate_lora(spec: LoraSpec, allow_pickle: bool = False) -> str | None:
    """Check a local LoRA file and return its sha256; return ``None`` for a hub id.

    Raises ``InvalidLora`` with a one-line message naming the file and the problem: missing,
    unreadable, not safetensors (pickles only with ``allow_pickle``), or a header that does not parse.
    """
    if not looks_local(spec.source):
        return None
    path = lora_file(spec)
    if not path.exists():
        raise InvalidLora(f"LoRA file {path} does not exist")
    if not path.is_file():
        raise InvalidLora(f"LoRA {path} is not a file")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        try:
            check_model_file(path, allow_pickle)
        except UnsafeCheckpoint as exc:
            raise InvalidLora(str(exc)) from exc
    elif suffix not in SAFE_SUFFIXES:
        raise InvalidLora(f"LoRA file {path} is not a .safetensors file (suffix {suffix or 'none'!r})")
    else:
        _check_safetensors_header(path)
    return sha256_of(path)


def _check_safetensors_header(path: Path) -> None:
    """Parse the safetensors header (cheap: no tensor data is read) and require at least one tensor."""
    try:
        with safe_open(str(path), framework="numpy") as handle:
            keys = list(handle.keys())
    except PermissionError as exc:
        raise InvalidLora(f"LoRA file {path} is not readable: {exc.strerror}") from exc
    except Exception as exc:  # safetensors raises SafetensorError / OSError with varied types
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidLora(f"LoRA file {path} is not a valid safetensors file: {reason}") from exc
    if not keys:
        raise InvalidLora(f"LoRA file {path} contains no tensors")


def sha256_of(path: Path) -> str:
    """The file's sha256, cached by (path, size, mtime) so a large LoRA is hashed once per change."""
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        with _HASH_LOCK:
            if key in _HASH_CACHE:
                return _HASH_CACHE[key]
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except PermissionError as exc:
        raise InvalidLora(f"LoRA file {path} is not readable: {exc.strerror}") from exc
    value = digest.hexdigest()
    with _HASH_LOCK:
        _HASH_CACHE[key] = value
    return value
