"""CivitAI's public REST API: search models, read a version's files and SHA-256, download with a token.

Endpoints (https://developer.civitai.com/site/reference/models): ``GET /api/v1/models`` (``query``,
``types``, ``baseModels``, ``limit``, ``nsfw``), ``GET /api/v1/model-versions/{id}`` and each file's
``downloadUrl``. The optional API token goes in the ``Authorization: Bearer`` header, never in a URL,
so it cannot appear in a logged URL or an error; it is a ``SecretStr`` until the header is built. It is
sent only to ``CONTENTFORGE_CIVITAI_BASE_URL``'s origin: a ``downloadUrl`` on another host gets none.

NSFW: models flagged ``nsfw`` (or versions with an ``nsfwLevel`` above 1) are dropped from search
results unless ``CONTENTFORGE_MODELS_SHOW_NSFW`` is set, and are refused at install either way.
Every request goes through the outbound policy (``CONTENTFORGE_CIVITAI_BASE_URL``: public addresses
only unless opted in).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from pydantic import SecretStr

from contentforge.config import Settings
from contentforge.models.catalog import HubFile, HubModel, ModelKind
from contentforge.models.downloads import raise_for_hub_status, same_origin
from contentforge.models.errors import DownloadRefused, HubError
from contentforge.outbound import OutboundPolicy

TYPES: dict[ModelKind, str] = {"checkpoint": "Checkpoint", "lora": "LORA"}
KIND_OF_TYPE = {"checkpoint": "checkpoint", "lora": "lora", "locon": "lora"}
SAFE_FORMAT = "SafeTensor"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class CivitAIClient:
    def __init__(
        self,
        base_url: str,
        token: SecretStr | None = None,
        *,
        show_nsfw: bool = False,
        policy: OutboundPolicy | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.show_nsfw = show_nsfw
        self._token = token
        policy = policy or OutboundPolicy.for_setting("civitai_base_url")
        policy.check_static(self.base_url)
        self.client = policy.client(timeout=TIMEOUT, follow_redirects=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> CivitAIClient:
        return cls(
            settings.civitai_base_url,
            settings.civitai_api_token,
            show_nsfw=settings.models_show_nsfw,
            policy=OutboundPolicy.for_setting("civitai_base_url", settings),
        )

    def close(self) -> None:
        self.client.close()

    def auth_headers(self) -> dict[str, str]:
        if self._token is None:
            return {}
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    def auth_headers_for(self, url: str) -> dict[str, str]:
        """The token header for ``url`` only if it is on CivitAI's own origin (``downloadUrl`` comes from
        the API's answer and could name any host)."""
        return self.auth_headers() if same_origin(url, self.base_url) else {}

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self.client.get(f"{self.base_url}{path}", params=params, headers=self.auth_headers())
        except httpx.TransportError as exc:
            raise HubError(f"CivitAI {path}: not reachable ({type(exc).__name__})") from exc
        raise_for_hub_status(response, f"CivitAI {path}")
        try:
            return response.json()
        except ValueError as exc:
            raise HubError(f"CivitAI {path}: the answer is not JSON") from exc

    def search(
        self, query: str, *, kind: ModelKind | None = None, base_model: str | None = None, limit: int = 20
    ) -> list[HubModel]:
        """Models matching ``query`` (newest version of each), NSFW ones hidden unless shown by setting."""
        params: dict[str, Any] = {"query": query, "limit": max(1, min(limit, 100))}
        if kind is not None:
            params["types"] = TYPES[kind]
        if base_model:
            params["baseModels"] = base_model
        if not self.show_nsfw:
            params["nsfw"] = "false"
        data = self._get("/api/v1/models", params)
        found: list[HubModel] = []
        for item in data.get("items", []):
            versions = item.get("modelVersions") or []
            if not versions:
                continue
            if KIND_OF_TYPE.get(str(item.get("type", "")).lower()) is None:
                continue  # embeddings, VAEs, controlnets: not something the registry installs
            model = self._model(item, versions[0])
            if model.nsfw and not self.show_nsfw:
                continue  # the server filter is a request; this is the guarantee
            found.append(model)
        return found

    def version(self, version_id: int | str) -> HubModel:
        """One model version with its files, hashes and trigger words."""
        data = self._get(f"/api/v1/model-versions/{int(version_id)}")
        item = dict(data.get("model") or {})
        # The version carries only the model's name, type and flags; description, tags, rating and
        # licence live on the model.
        if data.get("modelId") is not None:
            item |= self._get(f"/api/v1/models/{int(data['modelId'])}")
        item["nsfw"] = bool(item.get("nsfw")) or bool((data.get("model") or {}).get("nsfw"))
        return self._model(item, data)

    def pick_file(self, model: HubModel) -> HubFile:
        """The version's safetensors weights file; refuses a version that only has pickles."""
        if model.files:
            return model.files[0]
        raise DownloadRefused(f"CivitAI version {model.ref}: no .safetensors weights file to install")

    def _model(self, item: dict[str, Any], version: dict[str, Any]) -> HubModel:
        kind = KIND_OF_TYPE.get(str(item.get("type", "")).lower())
        if kind is None:
            raise DownloadRefused(
                f"CivitAI {item.get('type')!r} models are not supported (checkpoints, LoRAs)"
            )
        stats = item.get("stats") or version.get("stats") or {}
        rating = stats.get("rating")
        up, down = stats.get("thumbsUpCount"), stats.get("thumbsDownCount")
        score: float | None = None
        if isinstance(rating, int | float) and rating > 0:
            score = float(rating) / 5.0
        elif isinstance(up, int) and up > 0:
            score = up / (up + (down if isinstance(down, int) else 0))
        nsfw = bool(item.get("nsfw")) or int(version.get("nsfwLevel") or 1) > 1
        files = []
        for entry in version.get("files") or []:
            fmt = (entry.get("metadata") or {}).get("format")
            name = str(entry.get("name", ""))
            if fmt != SAFE_FORMAT and not name.lower().endswith(".safetensors"):
                continue
            if entry.get("type") not in (None, "Model"):
                continue  # training data, VAEs shipped alongside
            size_kb = entry.get("sizeKB")
            files.append(
                HubFile(
                    name=name,
                    url=str(entry.get("downloadUrl") or version.get("downloadUrl") or ""),
                    sha256=((entry.get("hashes") or {}).get("SHA256") or "").lower() or None,
                    size=int(size_kb * 1024) if isinstance(size_kb, int | float) else None,
                )
            )
        files.sort(key=lambda f: not f.name.lower().endswith(".safetensors"))
        allow = item.get("allowCommercialUse")
        licence = f"CivitAI licence; commercial use: {allow}" if allow is not None else "CivitAI licence"
        return HubModel(
            hub="civitai",
            ref=str(version.get("id")),
            name=f"{item.get('name', '?')} {version.get('name', '')}".strip(),
            kind="checkpoint" if kind == "checkpoint" else "lora",
            base_model=str(version.get("baseModel") or ""),
            description=_plain(item.get("description") or version.get("description") or ""),
            tags=tuple(str(t) for t in item.get("tags") or ()),
            trigger_words=tuple(str(w) for w in version.get("trainedWords") or ()),
            licence=licence,
            rating=score,
            downloads=int(stats.get("downloadCount") or 0),
            nsfw=nsfw,
            files=tuple(files),
        )


def _plain(html: str) -> str:
    """CivitAI descriptions are HTML; the registry keeps their text."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()[:2000]
