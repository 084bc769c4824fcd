"""Install a hub model or a local file into the registry: verified, probed, then recorded.

Order matters: the files are downloaded into this install's own staging folder (each checked against
its SHA-256 by ``downloads.download``), the family is probed from the tensors (``probe``), and only then
the folder is moved to ``<data_dir>/models/<kind>/<name>`` and the registry row written. A failure at
any step leaves no row and no file in the registry's folders. NSFW-flagged models are refused before any byte
is fetched, whatever ``CONTENTFORGE_MODELS_SHOW_NSFW`` says.

Two installs of one name (a retried request) must not destroy each other: the name is claimed with an
OS file lock for the whole install (a second one is refused before downloading), each install stages
in its own ``mkdtemp`` folder, and an existing final folder is never deleted or replaced.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from filelock import FileLock, Timeout

from contentforge.db.registry import InstalledModel, ModelRegistry
from contentforge.errors import InvalidInput
from contentforge.images.safety import check_model_file, sha256_of
from contentforge.models.catalog import HubModel, ModelKind
from contentforge.models.downloads import download
from contentforge.models.errors import DownloadRefused, InstallInProgress
from contentforge.models.probe import probe_checkpoint, probe_lora

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,119}")
DEFAULT_LORA_WEIGHT = 0.8


def slug(text: str) -> str:
    """A registry name from a hub name: lower case, runs of other characters as one dash."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")[:120]
    return name or "model"


def check_name(name: str) -> str:
    if NAME.fullmatch(name) is None or ".." in name:
        raise InvalidInput(
            f"model name {name!r}: use 1-120 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def models_dir(data_dir: Path) -> Path:
    return data_dir / "models"


def install_from_hub(
    model: HubModel,
    *,
    client: httpx.Client,
    registry: ModelRegistry,
    data_dir: Path,
    max_bytes: int,
    headers_for: Callable[[str], dict[str, str]] | None = None,
    name: str | None = None,
) -> InstalledModel:
    """Download, verify, probe and register ``model`` (a ``describe``d HF repo or a CivitAI version).

    ``headers_for(url)``: the hub's token header for a file URL, empty for a URL on another origin.
    """
    name = check_name(name or slug(model.name))
    if model.nsfw:
        raise DownloadRefused(
            f"{model.hub}:{model.ref} is flagged NSFW; this project's content policy refuses to install it"
        )
    if not model.files:
        raise DownloadRefused(f"{model.hub}:{model.ref}: no .safetensors file to install")
    root = models_dir(data_dir)
    final_dir = root / model.kind / name
    staging_root = root / ".staging"
    staging_root.mkdir(parents=True, exist_ok=True)
    with _claim(staging_root, name):
        if registry.get(name) is not None:
            raise InvalidInput(
                f"a model named {name!r} is installed already; remove it first or pick another --name"
            )
        _refuse_unregistered_files(final_dir, name)  # before any byte is fetched
        staging = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=staging_root))
        try:
            return _fetch_and_register(
                model, name, client, registry, staging, final_dir, max_bytes, headers_for
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _claim(staging_root: Path, name: str) -> Iterator[None]:
    """Hold ``name`` for one install at a time: a second one (a retried API request, say) is refused.

    An OS file lock, so a worker that dies mid-download releases it; nothing stale is left to clear.
    """
    lock = FileLock(staging_root / f"{name}.lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise InstallInProgress(
            f"an install of {name!r} is already running; wait for it (contentforge models list) "
            "or pick another --name"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _refuse_unregistered_files(final_dir: Path, name: str) -> None:
    """Files where ``name`` would go, with no registry row: never deleted, so the install stops."""
    if final_dir.exists():
        raise InvalidInput(
            f"{final_dir} exists but no model named {name!r} is registered (an interrupted install?); "
            "delete that folder or pick another --name"
        )


def _fetch_and_register(
    model: HubModel,
    name: str,
    client: httpx.Client,
    registry: ModelRegistry,
    staging: Path,
    final_dir: Path,
    max_bytes: int,
    headers_for: Callable[[str], dict[str, str]] | None,
) -> InstalledModel:
    """Download into this install's own ``staging`` folder, verify, probe, move into place, register."""
    hashes: list[tuple[str, str]] = []
    total = 0
    for hub_file in model.files:
        relative = Path(hub_file.name)
        if relative.is_absolute() or ".." in relative.parts:
            raise DownloadRefused(f"{model.hub}:{model.ref}: file name {hub_file.name!r} leaves its folder")
        is_weights = relative.suffix.lower() == ".safetensors"
        got = download(
            client,
            hub_file.url,
            staging / relative,
            expected_sha256=hub_file.sha256,
            max_bytes=max_bytes,
            headers=headers_for(hub_file.url) if headers_for is not None else None,
            require_hash=is_weights,
        )
        hashes.append((hub_file.name, got.sha256))
        total += got.size
    single = len(model.files) == 1
    target = staging / model.files[0].name if single else staging
    family, reason = _probe(target, model.kind)
    digest = hashes[0][1] if single else _folder_digest(hashes)
    _refuse_unregistered_files(final_dir, name)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(final_dir)  # same file system: atomic, and it never replaces a folder with files
    path = final_dir / model.files[0].name if single else final_dir
    installed = InstalledModel(
        name=name,
        kind=model.kind,
        source=model.hub,
        source_ref=model.ref,
        path=str(path.resolve()),
        family=family,
        family_reason=reason,
        sha256=digest,
        size_bytes=total,
        trigger_words=model.trigger_words,
        recommended_weight=DEFAULT_LORA_WEIGHT if model.kind == "lora" else None,
        tags=model.tags,
        description=model.description,
        licence=model.licence,
        rating=model.rating,
        downloads=model.downloads,
    )
    try:
        registry.add(installed)
    except Exception:
        shutil.rmtree(final_dir, ignore_errors=True)  # the folder this install just moved in, no other
        raise
    return installed


def install_local(
    path: Path,
    *,
    kind: ModelKind,
    registry: ModelRegistry,
    name: str,
    trigger_words: tuple[str, ...] = (),
    description: str = "",
    tags: tuple[str, ...] = (),
    weight: float | None = None,
) -> InstalledModel:
    """Register a local safetensors file (or diffusers folder) in place, probed and hashed."""
    name = check_name(name)
    path = path.expanduser().resolve()
    if not path.exists():
        raise InvalidInput(f"{path}: no such file or folder")
    if path.is_file():
        check_model_file(path, allow_pickle=False)
        if path.suffix.lower() != ".safetensors":
            raise DownloadRefused(f"{path.name}: only .safetensors files are registered")
    family, reason = _probe(path, kind)
    if path.is_file():
        digest, size = sha256_of(path), path.stat().st_size
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file())
        digest = _folder_digest([(str(p.relative_to(path)), sha256_of(p)) for p in files])
        size = sum(p.stat().st_size for p in files)
    installed = InstalledModel(
        name=name,
        kind=kind,
        source="local",
        source_ref=str(path),
        path=str(path),
        family=family,
        family_reason=reason,
        sha256=digest,
        size_bytes=size,
        trigger_words=trigger_words,
        recommended_weight=weight
        if weight is not None
        else (DEFAULT_LORA_WEIGHT if kind == "lora" else None),
        tags=tags,
        description=description,
    )
    registry.add(installed)
    return installed


def verify(model: InstalledModel) -> str | None:
    """None when the files still have the registered SHA-256; else what is wrong, in one line."""
    path = Path(model.path)
    if not path.exists():
        return f"{model.name}: {path} is missing"
    if path.is_file():
        digest = _fresh_sha256(path)
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file())
        digest = _folder_digest([(str(p.relative_to(path)), _fresh_sha256(p)) for p in files])
    if digest != model.sha256:
        return f"{model.name}: SHA-256 {digest[:12]}… differs from the registered {model.sha256[:12]}…"
    return None


def delete_files(model: InstalledModel, data_dir: Path) -> bool:
    """Delete an installed model's files if they live under the registry's folder (local ones stay)."""
    path = Path(model.path)
    root = models_dir(data_dir).resolve()
    owned = path.parent if path.is_file() else path
    if model.source == "local" or root not in owned.resolve().parents:
        return False
    shutil.rmtree(owned, ignore_errors=True)
    return True


def _probe(path: Path, kind: str) -> tuple[str, str]:
    if kind == "lora":
        return probe_lora(path), "tensor names of the LoRA"
    return probe_checkpoint(path)


def _folder_digest(hashes: list[tuple[str, str]]) -> str:
    lines = "\n".join(f"{name}\t{digest}" for name, digest in sorted(hashes))
    return hashlib.sha256(lines.encode()).hexdigest()


def _fresh_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
