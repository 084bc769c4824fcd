"""Model hubs against loopback fakes of the Hugging Face Hub and CivitAI APIs (tests/support/model_hubs.py).

The files served are real: a tiny SDXL pipeline and tiny LoRAs built in code and saved as safetensors.
An install must verify each file's SHA-256, probe the family from the tensors (a CivitAI label that
lies is overruled), refuse NSFW and pickles, survive a broken connection by resuming, and leave
nothing behind when anything fails. The installed pipeline and LoRA then generate an image.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr
from support.model_hubs import Blob, FakeHubs, HubWorld

from contentforge.config import Settings
from contentforge.db import make_engine, migrate
from contentforge.db.registry import ModelRegistry
from contentforge.domain import LoraSpec
from contentforge.errors import InvalidInput
from contentforge.models.civitai import CivitAIClient
from contentforge.models.errors import (
    DownloadRefused,
    HashMismatch,
    HubOffline,
    HubRateLimited,
    HubUnauthorized,
    InstallInProgress,
)
from contentforge.models.huggingface import HuggingFaceHub
from contentforge.models.install import install_from_hub, verify
from contentforge.outbound import OutboundPolicy

TOKEN = "civitai-secret-token-42"
LORA = "pytorch_lora_weights.safetensors"
PIPE_REPO = "tiny-org/tiny-sdxl-pipe"


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A tiny SDXL pipeline folder and two LoRAs (SDXL and SD1.5), built once for the module."""
    from contentforge.images.tiny import build_tiny_lora, build_tiny_sd15_pipeline, build_tiny_sdxl_pipeline

    root = tmp_path_factory.mktemp("tiny")
    pipe = build_tiny_sdxl_pipeline(7)
    pipe.save_pretrained(root / "pipe", safe_serialization=True)
    sdxl_lora = build_tiny_lora(pipe, root / "grain.safetensors", seed=3).read_bytes()
    sd15_lora = build_tiny_lora(build_tiny_sd15_pipeline(0), root / "sd15.safetensors", seed=4).read_bytes()
    pipe_files = {
        str(p.relative_to(root / "pipe")): p.read_bytes()
        for p in sorted((root / "pipe").rglob("*"))
        if p.is_file()
    }
    return {"pipe": pipe_files, "sdxl_lora": sdxl_lora, "sd15_lora": sd15_lora}


@pytest.fixture
def world(tiny_files: dict[str, object]) -> HubWorld:
    sdxl_lora = tiny_files["sdxl_lora"]
    sd15_lora = tiny_files["sd15_lora"]
    assert isinstance(sdxl_lora, bytes) and isinstance(sd15_lora, bytes)
    world = HubWorld()
    # The uploader labelled it SD 1.5; its tensors are SDXL's. The registry must believe the tensors.
    world.add_civitai(
        101,
        "Film Grain",
        type_="LORA",
        version_id=1001,
        base_model="SD 1.5",
        file_name="film_grain.safetensors",
        data=sdxl_lora,
        trained_words=["grainy 35mm"],
        tags=["photography", "film"],
        description="Analog film grain and soft halation",
    )
    world.add_civitai(
        102,
        "Watercolor Wash",
        type_="LORA",
        version_id=1002,
        base_model="SD 1.5",
        file_name="watercolor.safetensors",
        data=sd15_lora,
        trained_words=["wcwash"],
        tags=["painting"],
    )
    world.add_civitai(
        103,
        "Explicit Thing",
        type_="LORA",
        version_id=1003,
        base_model="SDXL 1.0",
        file_name="x.safetensors",
        data=sd15_lora,
        nsfw=True,
        tags=["film"],
    )
    world.add_civitai(
        104,
        "Token Film",
        type_="LORA",
        version_id=1004,
        base_model="SDXL 1.0",
        file_name="token_film.safetensors",
        data=sdxl_lora,
        require_token=TOKEN,
        tags=["film"],
    )
    world.add_civitai(
        105,
        "Busy Film",
        type_="LORA",
        version_id=1005,
        base_model="SDXL 1.0",
        file_name="busy.safetensors",
        data=sdxl_lora,
        rate_limited=True,
        tags=["film"],
    )
    world.add_civitai(
        106,
        "Broken Film",
        type_="LORA",
        version_id=1006,
        base_model="SDXL 1.0",
        file_name="broken.safetensors",
        data=sdxl_lora,
        corrupt=True,
        tags=["film"],
    )
    world.add_civitai(
        107,
        "Flaky Film",
        type_="LORA",
        version_id=1007,
        base_model="SDXL 1.0",
        file_name="flaky.safetensors",
        data=sdxl_lora,
        break_first=True,
        tags=["film"],
    )
    world.add_civitai(
        108,
        "Pickled Film",
        type_="LORA",
        version_id=1008,
        base_model="SDXL 1.0",
        file_name="pickled.ckpt",
        data=b"not really a pickle",
        fmt="PickleTensor",
        tags=["film"],
    )
    pipe_files = tiny_files["pipe"]
    assert isinstance(pipe_files, dict)
    world.add_hf_repo(
        PIPE_REPO,
        {**pipe_files, "README.md": b"# tiny"},
        tags=["diffusers", "text-to-image", "license:mit"],
        card={"license": "mit", "base_model": "stabilityai/stable-diffusion-xl-base-1.0"},
    )
    world.add_hf_repo(
        "tiny-org/grain-lora",
        {"pytorch_lora_weights.safetensors": sdxl_lora},
        tags=["diffusers", "lora", "base_model:stabilityai/stable-diffusion-xl-base-1.0"],
        card={"instance_prompt": "grainy 35mm", "license": "openrail"},
    )
    world.add_hf_repo(
        "tiny-org/nsfw-lora", {"x.safetensors": sd15_lora}, tags=["lora", "not-for-all-audiences"]
    )
    world.add_hf_repo("tiny-org/pickled-lora", {"pytorch_lora_weights.bin": b"pickle"}, tags=["lora"])
    return world


@pytest.fixture
def hubs(world: HubWorld) -> Iterator[FakeHubs]:
    with FakeHubs(world) as server:
        yield server


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    migrate(url)
    return ModelRegistry(make_engine(url))


def _civitai(hubs: FakeHubs, token: str | None = None, show_nsfw: bool = False) -> CivitAIClient:
    return CivitAIClient(hubs.url, SecretStr(token) if token else None, show_nsfw=show_nsfw)


def _install(client: CivitAIClient, version: int, registry: ModelRegistry, data_dir: Path, **kw: object):  # type: ignore[no-untyped-def]
    model = client.version(version)
    return install_from_hub(
        model,
        client=client.client,
        registry=registry,
        data_dir=data_dir,
        max_bytes=int(kw.pop("max_bytes", 50 * 2**20)),  # type: ignore[call-overload]
        headers_for=client.auth_headers_for,
        name=kw.pop("name", None),  # type: ignore[arg-type]
    )


def test_civitai_search_sends_the_filters_and_hides_nsfw_models(hubs: FakeHubs, world: HubWorld) -> None:
    found = _civitai(hubs).search("film", kind="lora", base_model="SDXL 1.0")
    names = [m.name for m in found]
    assert "Explicit Thing v1.0" not in names
    assert "Token Film v1.0" in names and "Film Grain v1.0" not in names  # base model filter applied
    sent = [s for s in world.seen if s.path == "/api/v1/models"][-1].query
    assert sent["types"] == ["LORA"] and sent["baseModels"] == ["SDXL 1.0"] and sent["nsfw"] == ["false"]
    shown = _civitai(hubs, show_nsfw=True).search("film", kind="lora", base_model="SDXL 1.0")
    assert "Explicit Thing v1.0" in [m.name for m in shown]


def test_civitai_install_verifies_the_sha256_and_probes_the_family_from_the_tensors(
    hubs: FakeHubs, registry: ModelRegistry, tmp_path: Path, tiny_files: dict[str, object]
) -> None:
    client = _civitai(hubs)
    installed = _install(client, 1001, registry, tmp_path)
    assert installed.family == "sdxl"  # CivitAI said "SD 1.5"; the tensors say SDXL
    assert installed.sha256 == hashlib.sha256(tiny_files["sdxl_lora"]).hexdigest()  # type: ignore[arg-type]
    assert installed.trigger_words == ("grainy 35mm",) and installed.rating == pytest.approx(0.9)
    assert installed.description == "Analog film grain and soft halation"
    assert Path(installed.path).read_bytes() == tiny_files["sdxl_lora"]
    assert registry.get("film-grain-v1.0") == installed
    sd15 = _install(client, 1002, registry, tmp_path)
    assert sd15.family == "sd15"


def test_a_corrupted_download_is_caught_by_its_hash_and_leaves_nothing(
    hubs: FakeHubs, registry: ModelRegistry, tmp_path: Path
) -> None:
    with pytest.raises(HashMismatch, match=r"broken\.safetensors: SHA-256 .* does not match"):
        _install(_civitai(hubs), 1006, registry, tmp_path)
    assert registry.list_models() == []
    left = [p for p in (tmp_path / "models").rglob("*") if p.is_file()]
    assert [p.name for p in left] == ["broken-film-v1.0.lock"]  # the name's empty lock file, kept by design


def test_a_token_is_sent_in_a_header_only_and_401_says_to_set_it(
    hubs: FakeHubs, world: HubWorld, registry: ModelRegistry, tmp_path: Path
) -> None:
    with pytest.raises(HubUnauthorized, match=r"401.*token") as refused:
        _install(_civitai(hubs), 1004, registry, tmp_path)
    assert TOKEN not in str(refused.value)
    installed = _install(_civitai(hubs, TOKEN), 1004, registry, tmp_path)
    assert installed.family == "sdxl"
    assert all(TOKEN not in s.path and TOKEN not in str(s.query) for s in world.seen)
    assert any(s.headers.get("authorization") == f"Bearer {TOKEN}" for s in world.seen)


def test_429_is_a_rate_limit_error_with_the_servers_wait(
    hubs: FakeHubs, registry: ModelRegistry, tmp_path: Path
) -> None:
    with pytest.raises(HubRateLimited, match="retry after 17 s") as limited:
        _install(_civitai(hubs), 1005, registry, tmp_path)
    assert limited.value.retry_after == 17
    assert registry.list_models() == []


def test_nsfw_pickle_and_oversized_models_are_refused(
    hubs: FakeHubs, world: HubWorld, registry: ModelRegistry, tmp_path: Path
) -> None:
    client = _civitai(hubs, show_nsfw=True)
    with pytest.raises(DownloadRefused, match="NSFW"):
        _install(client, 1003, registry, tmp_path)
    assert not any(s.path == "/api/download/models/1003" for s in world.seen)  # refused before any byte
    with pytest.raises(DownloadRefused, match=r"no \.safetensors"):
        _install(client, 1008, registry, tmp_path)
    with pytest.raises(DownloadRefused, match="download cap"):
        _install(client, 1001, registry, tmp_path, max_bytes=1000)
    assert registry.list_models() == []


def test_a_broken_connection_is_resumed_with_a_range_request(
    hubs: FakeHubs, world: HubWorld, registry: ModelRegistry, tmp_path: Path, tiny_files: dict[str, object]
) -> None:
    installed = _install(_civitai(hubs), 1007, registry, tmp_path)
    assert Path(installed.path).read_bytes() == tiny_files["sdxl_lora"]
    ranges = [s.headers.get("range") for s in world.seen if s.path == "/api/download/models/1007"]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert int(ranges[1].removeprefix("bytes=").rstrip("-")) > 0


def test_hf_search_sends_filters_and_sort_through_hf_endpoint_and_hides_nsfw(
    hubs: FakeHubs, world: HubWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hubs.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = HuggingFaceHub.from_settings(Settings())
    assert hub.endpoint == hubs.url
    found = hub.search("lora", kind="lora", sort="downloads", limit=10)
    assert [m.ref for m in found] == ["tiny-org/grain-lora", "tiny-org/pickled-lora"]
    sent = [s for s in world.seen if s.path == "/api/models"][-1].query
    assert sent["filter"] == ["lora"] and sent["sort"] == ["downloads"] and sent["search"] == ["lora"]
    grain = hub.describe("tiny-org/grain-lora")
    assert grain.trigger_words == ("grainy 35mm",) and grain.licence == "openrail"
    assert [f.name for f in grain.files] == ["pytorch_lora_weights.safetensors"]
    with pytest.raises(DownloadRefused, match="pickle formats are refused"):
        hub.describe("tiny-org/pickled-lora")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubOffline, match="HF_HUB_OFFLINE=1"):
        hub.search("lora")


def test_a_pipeline_from_hf_and_a_lora_from_civitai_install_and_generate(
    hubs: FakeHubs, registry: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contentforge.images.diffusers_backend import DiffusersBackend
    from contentforge.images.protocol import ImageRequest

    monkeypatch.setenv("HF_ENDPOINT", hubs.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = HuggingFaceHub.from_settings(Settings())
    pipe = install_from_hub(
        hub.describe(PIPE_REPO), client=hub.client, registry=registry, data_dir=tmp_path, max_bytes=50 * 2**20
    )
    assert pipe.kind == "checkpoint" and pipe.family == "sdxl" and pipe.licence == "mit"
    assert not (Path(pipe.path) / "README.md").exists()  # only configs and safetensors are fetched
    lora = _install(_civitai(hubs), 1001, registry, tmp_path)

    backend = DiffusersBackend.from_settings(
        Settings(image_profile="model", image_model=pipe.path, image_device="cpu", image_replicas=1)
    )
    assert backend.family == "sdxl"
    base = ImageRequest(prompt="a cat", seed=5, steps=2, guidance_scale=5.0, width=64, height=64)
    with_lora = base.model_copy(update={"loras": (LoraSpec(source=lora.path, scale=0.8),)})
    plain, styled = backend.generate(base), backend.generate(with_lora)
    assert plain.record.model == pipe.path
    assert styled.record.loras[0].sha256 == lora.sha256
    assert not np.array_equal(np.asarray(plain.image), np.asarray(styled.image))


def test_the_civitai_token_is_not_sent_to_a_download_url_on_another_origin(
    hubs: FakeHubs, world: HubWorld, registry: ModelRegistry, tmp_path: Path, tiny_files: dict[str, object]
) -> None:
    lora = tiny_files["sdxl_lora"]
    assert isinstance(lora, bytes)
    elsewhere_world = HubWorld(blobs={"/api/download/models/1001": Blob(lora)})
    with FakeHubs(elsewhere_world) as elsewhere:  # another port: another origin
        world.download_base = elsewhere.url
        installed = _install(_civitai(hubs, TOKEN), 1001, registry, tmp_path)
    assert Path(installed.path).read_bytes() == lora
    assert [s.headers.get("authorization") for s in elsewhere_world.seen] == [None]
    api_calls = [s for s in world.seen if s.path.startswith("/api/v1/")]
    assert api_calls and all(s.headers.get("authorization") == f"Bearer {TOKEN}" for s in api_calls)


def test_hf_metadata_goes_to_the_checked_address_never_to_a_second_lookup(
    hubs: FakeHubs, world: HubWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy resolves ``hf-hub.invalid`` to the fake; the system resolver knows no such name, so a
    request that looked the name up again (huggingface_hub's own session) would not get through."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    port = hubs.url.rsplit(":", 1)[1]
    policy = OutboundPolicy(setting="HF_ENDPOINT", allow_private=True, resolver=lambda host, _: ["127.0.0.1"])
    hub = HuggingFaceHub(f"http://hf-hub.invalid:{port}", policy=policy, token="hf_secret_token")
    try:
        found = hub.search("grain", kind="lora")
        grain = hub.describe("tiny-org/grain-lora")
    finally:
        hub.close()
    assert [m.ref for m in found] == ["tiny-org/grain-lora"]
    weights = world.hf_repos["tiny-org/grain-lora"]["files"][LORA]
    assert grain.files[0].sha256 == hashlib.sha256(weights).hexdigest()
    metadata = [s for s in world.seen if s.path.startswith("/api/models")]
    assert len(metadata) == 2
    assert all(s.headers["host"] == f"hf-hub.invalid:{port}" for s in metadata)
    assert all(s.headers.get("authorization") == "Bearer hf_secret_token" for s in metadata)
    refusing = OutboundPolicy(setting="HF_ENDPOINT", resolver=lambda host, _: ["169.254.169.254"])
    with pytest.raises(InvalidInput, match="non-public"):
        HuggingFaceHub("http://hf-hub.invalid", policy=refusing).search("grain")


def test_a_second_install_of_a_name_while_the_first_downloads_is_refused_and_harms_nothing(
    hubs: FakeHubs, world: HubWorld, registry: ModelRegistry, tmp_path: Path, tiny_files: dict[str, object]
) -> None:
    release = threading.Event()
    world.blobs["/api/download/models/1001"].hold_first = release
    first: dict[str, object] = {}

    def install_first() -> None:
        try:
            first["model"] = _install(_civitai(hubs), 1001, registry, tmp_path, name="grain")
        except Exception as exc:  # reported by the assertions below
            first["error"] = exc

    thread = threading.Thread(target=install_first)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not any(s.path == "/api/download/models/1001" for s in world.seen):
            assert time.monotonic() < deadline, "the first install never started its download"
            time.sleep(0.02)
        with pytest.raises(InstallInProgress, match="already running"):
            _install(_civitai(hubs), 1001, registry, tmp_path, name="grain")
    finally:
        release.set()
        thread.join(60)
    assert "error" not in first, first
    installed = registry.get("grain")
    assert installed is not None and installed == first["model"]
    assert verify(installed) is None  # the row points at the first install's intact files
    assert sum(s.path == "/api/download/models/1001" for s in world.seen) == 1  # refused before fetching
    assert [p.name for p in (tmp_path / "models" / ".staging").iterdir()] == ["grain.lock"]  # no staging
    with pytest.raises(InvalidInput, match="installed already"):
        _install(_civitai(hubs), 1001, registry, tmp_path, name="grain")
    assert verify(installed) is None


def test_files_left_where_an_install_would_go_are_never_deleted(
    hubs: FakeHubs, world: HubWorld, registry: ModelRegistry, tmp_path: Path
) -> None:
    leftover = tmp_path / "models" / "lora" / "grain"
    leftover.mkdir(parents=True)
    (leftover / "keep.safetensors").write_bytes(b"someone's file")
    with pytest.raises(InvalidInput, match="exists but no model named 'grain' is registered"):
        _install(_civitai(hubs), 1001, registry, tmp_path, name="grain")
    assert (leftover / "keep.safetensors").read_bytes() == b"someone's file"
    assert registry.list_models() == []
    assert not any(s.path == "/api/download/models/1001" for s in world.seen)  # refused before fetching
