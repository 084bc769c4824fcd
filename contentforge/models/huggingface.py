"""The Hugging Face Hub through ``huggingface_hub``: search with filters, file metadata, downloads.

Search and metadata are the Hub API's ``GET /api/models`` and ``GET /api/models/{repo}?blobs=true``,
sent through the outbound policy's pinned client (the address checked is the address connected to,
so a DNS rebind cannot carry the token elsewhere) and parsed by ``huggingface_hub``'s ``ModelInfo``.
The endpoint is ``CONTENTFORGE_HF_ENDPOINT``, else the ``HF_ENDPOINT`` variable (read when the
client is built, not when ``huggingface_hub`` was imported), else huggingface.co. ``HF_HUB_OFFLINE=1``
refuses both in one line: offline, only models already in the registry are used. Files are fetched
from the endpoint's ``/{repo}/resolve/{commit}/{file}`` URL by ``downloads.download`` (size cap,
resume, SHA-256 from the file's LFS metadata), pinned to the commit the metadata came from, so
metadata and bytes agree.

NSFW: the Hub tags such repos ``not-for-all-audiences``; they are hidden from search unless
``CONTENTFORGE_MODELS_SHOW_NSFW`` is set, and refused at install either way.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from contentforge.config import Settings
from contentforge.images.loading import offline
from contentforge.images.safety import PICKLE_SUFFIXES
from contentforge.models.catalog import HubFile, HubModel, ModelKind
from contentforge.models.downloads import TEXT_SUFFIXES, raise_for_hub_status, same_origin
from contentforge.models.errors import DownloadRefused, HubError, HubOffline
from contentforge.outbound import OutboundPolicy

DEFAULT_ENDPOINT = "https://huggingface.co"
NSFW_TAG = "not-for-all-audiences"
SORTS = ("downloads", "likes", "last_modified", "trending_score")
_API_SORTS = {"last_modified": "lastModified", "trending_score": "trendingScore"}
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
FAMILY_CLASSES = {
    "StableDiffusionPipeline": "SD 1.5",
    "StableDiffusionXLPipeline": "SDXL",
    "FluxPipeline": "Flux",
}


def endpoint_of(settings: Settings) -> str:
    return (settings.hf_endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


class HuggingFaceHub:
    def __init__(
        self,
        endpoint: str,
        *,
        show_nsfw: bool = False,
        policy: OutboundPolicy | None = None,
        token: str | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.show_nsfw = show_nsfw
        policy = policy or OutboundPolicy(setting="HF_ENDPOINT")
        policy.check_static(self.endpoint)
        self._policy = policy
        self._token = token
        self.client = policy.client(timeout=TIMEOUT, follow_redirects=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> HuggingFaceHub:
        from huggingface_hub import get_token

        base = OutboundPolicy.for_setting("hf_endpoint", settings)
        policy = OutboundPolicy(setting="HF_ENDPOINT", allow_private=base.allow_private, opt_in=base.opt_in)
        return cls(
            endpoint_of(settings), show_nsfw=settings.models_show_nsfw, policy=policy, token=get_token()
        )

    def close(self) -> None:
        self.client.close()

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def auth_headers_for(self, url: str) -> dict[str, str]:
        """The token header for ``url`` only if it is on the endpoint's own origin."""
        return self.auth_headers() if same_origin(url, self.endpoint) else {}

    def _online(self, what: str) -> None:
        if offline():
            raise HubOffline(
                f"{what}: HF_HUB_OFFLINE=1, so the hub is not contacted; unset it to search or install"
            )
        self._policy.addresses(self.endpoint)  # every address the endpoint resolves to must be allowed

    def search(
        self,
        query: str,
        *,
        kind: ModelKind | None = None,
        task: str | None = None,
        library: str | None = None,
        base_model: str | None = None,
        sort: str = "downloads",
        limit: int = 20,
    ) -> list[HubModel]:
        """Models matching ``query`` and the filters, most downloaded (or liked…) first; NSFW hidden."""
        self._online("Hugging Face search")
        if sort not in SORTS:
            raise DownloadRefused(f"sort {sort!r}: use one of {', '.join(SORTS)}")
        filters: list[str] = []
        if library:
            filters.append(library)
        if kind == "lora":
            filters.append("lora")
        if base_model:
            filters.append(f"base_model:{base_model}")
        params: dict[str, Any] = {"sort": _API_SORTS.get(sort, sort), "direction": -1, "full": True}
        params["limit"] = max(1, min(limit, 100))
        if query:
            params["search"] = query
        if filters:
            params["filter"] = filters
        if task:
            params["pipeline_tag"] = task
        found = self._get("Hugging Face search", "/api/models", params)
        if not isinstance(found, list):
            raise HubError("Hugging Face search: the answer is not a list of models")
        models = [self._model(item, kind) for item in found]
        return [m for m in models if self.show_nsfw or not m.nsfw]

    def describe(self, repo_id: str, kind: ModelKind | None = None) -> HubModel:
        """One repo with the files an install would fetch, each with its LFS SHA-256 and size."""
        self._online(f"Hugging Face {repo_id}")
        data = self._get(f"Hugging Face {repo_id}", f"/api/models/{repo_id}", {"blobs": True})
        return self._model(data, kind, with_files=True)

    def _get(self, what: str, path: str, params: dict[str, Any]) -> Any:
        """``GET`` on the endpoint through the pinned client (never ``huggingface_hub``'s own session,
        which would look the name up again and could carry the token to a rebound, private address)."""
        try:
            response = self.client.get(f"{self.endpoint}{path}", params=params, headers=self.auth_headers())
        except httpx.TransportError as exc:
            raise HubError(f"{what}: not reachable ({type(exc).__name__})") from exc
        raise_for_hub_status(response, what)
        try:
            return response.json()
        except ValueError as exc:
            raise HubError(f"{what}: the answer is not JSON") from exc

    def _model(self, data: Any, kind: ModelKind | None, *, with_files: bool = False) -> HubModel:
        from huggingface_hub.hf_api import ModelInfo

        if not isinstance(data, dict):
            raise HubError("Hugging Face: a model in the answer is not an object")
        info = ModelInfo(**{"siblings": None, **data})  # the Hub's JSON, parsed by huggingface_hub
        tags = tuple(str(t) for t in (getattr(info, "tags", None) or ()))
        siblings = list(getattr(info, "siblings", None) or ())
        names = {s.rfilename for s in siblings}
        guessed: ModelKind = "checkpoint" if "model_index.json" in names else "lora"
        if kind is None:
            kind = "lora" if "lora" in tags else guessed
        card = getattr(info, "card_data", None)
        card_dict: dict[str, Any] = card.to_dict() if card is not None and hasattr(card, "to_dict") else {}
        base = card_dict.get("base_model") or next(
            (t.split(":", 1)[1] for t in tags if t.startswith("base_model:") and t.count(":") == 1), ""
        )
        triggers = card_dict.get("instance_prompt") or card_dict.get("trigger_words") or ()
        if isinstance(triggers, str):
            triggers = (triggers,)
        files = self._files(info, kind) if with_files else ()
        return HubModel(
            hub="huggingface",
            ref=str(info.id),
            name=str(info.id).split("/")[-1],
            kind=kind,
            base_model=str(base if isinstance(base, str) else ",".join(base)),
            description=str(card_dict.get("description") or getattr(info, "pipeline_tag", "") or ""),
            tags=tuple(t for t in tags if ":" not in t),
            trigger_words=tuple(str(t) for t in triggers),
            licence=str(
                card_dict.get("license") or next((t[8:] for t in tags if t.startswith("license:")), "")
            ),
            rating=None,
            downloads=int(getattr(info, "downloads", 0) or 0),
            nsfw=NSFW_TAG in tags,
            files=files,
        )

    def _files(self, info: Any, kind: ModelKind) -> tuple[HubFile, ...]:
        """What to fetch: a LoRA's one safetensors file, or a diffusers folder's configs and safetensors."""
        from huggingface_hub import hf_hub_url

        siblings = list(info.siblings or ())
        names = {s.rfilename for s in siblings}

        def hub_file(sibling: Any) -> HubFile:
            lfs = getattr(sibling, "lfs", None)
            return HubFile(
                name=sibling.rfilename,
                url=hf_hub_url(info.id, sibling.rfilename, revision=info.sha, endpoint=self.endpoint),
                sha256=getattr(lfs, "sha256", None) if lfs is not None else None,
                size=getattr(sibling, "size", None),
            )

        weights = [s for s in siblings if s.rfilename.endswith(".safetensors")]
        if kind == "lora" or "model_index.json" not in names:
            if not weights:
                pickles = sorted(n for n in names if os.path.splitext(n)[1].lower() in PICKLE_SUFFIXES)
                raise DownloadRefused(
                    f"{info.id}: no .safetensors file (only {', '.join(pickles) or 'other files'}); "
                    "pickle formats are refused"
                )
            preferred = (
                [s for s in weights if s.rfilename == LORA_WEIGHT_NAME]
                or [s for s in weights if "/" not in s.rfilename]
                or weights
            )
            return (hub_file(preferred[0]),)
        chosen = []
        for sibling in siblings:
            name = sibling.rfilename
            suffix = os.path.splitext(name)[1].lower()
            if "/" not in name and name != "model_index.json":
                continue  # README, previews, single-file duplicates at the root
            if suffix in TEXT_SUFFIXES or (suffix == ".safetensors" and not _variant(name, names)):
                chosen.append(hub_file(sibling))
        return tuple(chosen)


def _variant(name: str, names: set[str]) -> bool:
    """``x.fp16.safetensors`` next to ``x.safetensors``: the full-precision file is the one installed."""
    stem = name.removesuffix(".safetensors")
    if "." not in stem.rsplit("/", 1)[-1]:
        return False
    return f"{stem.rsplit('.', 1)[0]}.safetensors" in names
