"""What the CLI, the API and the install flow share: checked requests to search, install and prune.

Every request is checked here first (hub name, reference shape, model name), so a bad one fails in one
line before any hub is contacted; then the hub client is built from the settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from contentforge.config import Settings
from contentforge.db.registry import InstalledModel, ModelRegistry
from contentforge.domain import Persona
from contentforge.errors import InvalidInput
from contentforge.images.loras import HUB_ID, REGISTRY_PREFIX
from contentforge.models.catalog import HubModel, ModelKind
from contentforge.models.install import check_name, install_from_hub

Hub = Literal["civitai", "huggingface"]
HUBS: tuple[str, ...] = ("civitai", "huggingface")
KINDS: tuple[str, ...] = ("checkpoint", "lora")
_VERSION_ID = re.compile(r"[1-9][0-9]{0,11}")


@dataclass(frozen=True)
class InstallRequest:
    hub: Hub
    ref: str
    name: str | None = None
    kind: ModelKind | None = None

    @classmethod
    def checked(cls, hub: str, ref: str, name: str | None = None, kind: str | None = None) -> InstallRequest:
        """The request, or one ``InvalidInput`` line saying what is wrong with it."""
        if hub not in HUBS:
            raise InvalidInput(f"hub {hub!r}: use civitai or huggingface")
        if hub == "civitai" and _VERSION_ID.fullmatch(ref) is None:
            raise InvalidInput(
                f"CivitAI reference {ref!r}: give the model version id (digits), see models search"
            )
        if hub == "huggingface" and HUB_ID.fullmatch(ref) is None:
            raise InvalidInput(f"Hugging Face reference {ref!r}: give a repo id like owner/name")
        if kind is not None and kind not in KINDS:
            raise InvalidInput(f"kind {kind!r}: use checkpoint or lora")
        if name is not None:
            check_name(name)
        return cls(hub=hub, ref=ref, name=name, kind=kind)  # type: ignore[arg-type]


def search(
    settings: Settings,
    hub: str,
    query: str,
    *,
    kind: str | None = None,
    base_model: str | None = None,
    limit: int = 20,
    sort: str = "downloads",
) -> list[HubModel]:
    if hub not in HUBS:
        raise InvalidInput(f"hub {hub!r}: use civitai or huggingface")
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"kind {kind!r}: use checkpoint or lora")
    if not 1 <= limit <= 100:
        raise InvalidInput(f"limit {limit}: use 1 to 100")
    chosen: ModelKind | None = "lora" if kind == "lora" else "checkpoint" if kind == "checkpoint" else None
    if hub == "civitai":
        from contentforge.models.civitai import CivitAIClient

        client = CivitAIClient.from_settings(settings)
        try:
            return client.search(query, kind=chosen, base_model=base_model, limit=limit)
        finally:
            client.close()
    from contentforge.models.huggingface import HuggingFaceHub

    hf = HuggingFaceHub.from_settings(settings)
    try:
        return hf.search(query, kind=chosen, base_model=base_model, limit=limit, sort=sort)
    finally:
        hf.close()


def install(settings: Settings, registry: ModelRegistry, request: InstallRequest) -> InstalledModel:
    """Describe the model on its hub, then download, verify, probe and register it."""
    max_bytes = settings.models_max_download_mb * 2**20
    if request.hub == "civitai":
        from contentforge.models.civitai import CivitAIClient

        client = CivitAIClient.from_settings(settings)
        try:
            model = client.version(request.ref)
            return install_from_hub(
                model,
                client=client.client,
                registry=registry,
                data_dir=settings.data_dir,
                max_bytes=max_bytes,
                headers_for=client.auth_headers_for,
                name=request.name,
            )
        finally:
            client.close()
    from contentforge.models.huggingface import HuggingFaceHub

    hub = HuggingFaceHub.from_settings(settings)
    try:
        model = hub.describe(request.ref, request.kind)
        return install_from_hub(
            model,
            client=hub.client,
            registry=registry,
            data_dir=settings.data_dir,
            max_bytes=max_bytes,
            headers_for=hub.auth_headers_for,
            name=request.name,
        )
    finally:
        hub.close()


def models_in_use(
    models: list[InstalledModel], personas: list[Persona], settings: Settings
) -> dict[str, str]:
    """Installed models something depends on, with who: a persona's LoRA or the configured image model."""
    used: dict[str, str] = {}
    by_path = {m.path: m.name for m in models}
    for persona in personas:
        if persona.lora is None:
            continue
        source = persona.lora.source
        name = source.removeprefix(REGISTRY_PREFIX).strip() if source.startswith(REGISTRY_PREFIX) else None
        if name is None:
            name = by_path.get(source)
        if name is not None:
            used[name] = f"persona {persona.name}"
    if settings.image_model and settings.image_model in by_path:
        used[by_path[settings.image_model]] = "CONTENTFORGE_IMAGE_MODEL"
    return used
