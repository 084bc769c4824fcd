"""Model loading (family detection, folders, single files, hub cache, pickle refusal) and memory strategies.

Pipelines are tiny random-weight SD1.5/SDXL pipelines built in code and saved with safetensors; nothing
is downloaded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from contentforge.config import Settings
from contentforge.errors import InvalidInput, InvalidLora, UnsafeCheckpoint
from contentforge.images import memory
from contentforge.images import pool as pools
from contentforge.images.loading import detect_family, dtype_kwarg, family_of_single_file, load_pipeline
from contentforge.images.protocol import ImageRequest


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def request(seed: int = 3, **extra: Any) -> ImageRequest:
    fields: dict[str, Any] = {"steps": 3, "guidance_scale": 5.0, "width": 128, "height": 128} | extra
    return ImageRequest(prompt="a portrait photo of a woman in a cafe", seed=seed, **fields)


def pixels(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def sd15_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from contentforge.images.tiny import build_tiny_sd15_pipeline

    folder = tmp_path_factory.mktemp("models") / "sd15"
    build_tiny_sd15_pipeline(0).save_pretrained(folder, safe_serialization=True)
    return folder


# -- family detection -----------------------------------------------------------------------------


def test_family_from_model_index_setting_and_file_keys(sd15_folder: Path, tmp_path: Path) -> None:
    assert detect_family(str(sd15_folder), "auto") == (
        "sd15",
        "model_index.json names StableDiffusionPipeline",
    )
    family, reason = detect_family(str(sd15_folder), "sdxl")
    assert (family, reason) == ("sdxl", "CONTENTFORGE_IMAGE_FAMILY=sdxl")

    other = tmp_path / "other"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(InvalidInput, match=r"KandinskyPipeline.*CONTENTFORGE_IMAGE_FAMILY"):
        detect_family(str(other), "auto")
    with pytest.raises(InvalidInput, match=r"no model_index\.json"):
        detect_family(str(tmp_path), "auto")

    cases = {
        "sdxl.safetensors": (
            {"conditioner.embedders.1.model.x": torch.zeros(1), "model.diffusion_model.y": torch.zeros(1)},
            "sdxl",
        ),
        "sd15.safetensors": ({"model.diffusion_model.input_blocks.0": torch.zeros(1)}, "sd15"),
        "flux.safetensors": ({"double_blocks.0.img_attn.qkv.weight": torch.zeros(1)}, "flux"),
        "lora.safetensors": ({"unet.something": torch.zeros(1)}, None),
    }
    for name, (tensors, expected) in cases.items():
        save_file(tensors, str(tmp_path / name))
        assert family_of_single_file(tmp_path / name) == expected, name
    assert detect_family(str(tmp_path / "sdxl.safetensors"), "auto")[0] == "sdxl"
    with pytest.raises(InvalidInput, match="set CONTENTFORGE_IMAGE_FAMILY"):
        detect_family(str(tmp_path / "lora.safetensors"), "auto")
    # A config folder given for a single file decides the family.
    assert detect_family(str(tmp_path / "lora.safetensors"), "auto", str(sd15_folder))[0] == "sd15"


def test_hub_id_offline_uses_only_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(
        InvalidInput, match=r"local hub cache \(HF_HUB_OFFLINE=1\).*CONTENTFORGE_IMAGE_FAMILY"
    ):
        detect_family("stabilityai/stable-diffusion-xl-base-1.0", "auto")

    # A hub id found in the cache is detected from the cached model_index.json, offline.
    snapshot = Path(constants.HF_HUB_CACHE) / "models--someone--tiny-sd15"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text("a" * 40)
    files = snapshot / "snapshots" / ("a" * 40)
    files.mkdir(parents=True)
    (files / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    family, reason = detect_family("someone/tiny-sd15", "auto")
    assert family == "sd15" and "someone/tiny-sd15/model_index.json" in reason


# -- loading --------------------------------------------------------------------------------------


def test_dtype_keyword_and_device_choices() -> None:
    import diffusers

    from contentforge.images.diffusers_backend import resolve_device, resolve_dtype

    major, minor = (int(p) for p in diffusers.__version__.split(".")[:2])
    assert dtype_kwarg() == ("dtype" if (major, minor) >= (0, 36) else "torch_dtype")
    assert resolve_dtype("cpu", tiny=False) is torch.float32
    assert resolve_dtype("mps", tiny=False) is torch.float16
    assert resolve_dtype("cuda", tiny=True) is torch.float32
    assert resolve_device("cuda:1") == ("cuda:1", "CONTENTFORGE_IMAGE_DEVICE=cuda:1")
    device, reason = resolve_device("auto")
    assert device == (
        "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    )
    assert reason.startswith("auto:")


@pytest.mark.slow
def test_sd15_folder_loads_through_the_backend(sd15_folder: Path) -> None:
    """A saved SD1.5 folder is detected, loaded as StableDiffusionPipeline and equals the in-code pipeline."""
    from diffusers import StableDiffusionPipeline

    from contentforge.images.diffusers_backend import DiffusersBackend

    from_folder = DiffusersBackend.from_settings(
        settings(image_profile="model", image_model=str(sd15_folder), image_device="cpu", image_replicas=2)
    )
    in_code = DiffusersBackend.from_settings(
        settings(image_profile="tiny", image_family="sd15", image_device="cpu")
    )
    try:
        assert from_folder.family == "sd15" and from_folder.name == "diffusers-sd15"
        assert "StableDiffusionPipeline" in from_folder.describe()
        loaded = from_folder.generate(request())
        assert isinstance(
            pools.get_pool(from_folder.pool_key, lambda: pytest.fail("not loaded")).base,
            StableDiffusionPipeline,
        )
        reference = in_code.generate(request())
        diff = np.abs(pixels(loaded.image) - pixels(reference.image))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
        assert pixels(loaded.image).std() > 5
        extra = loaded.record.extra
        assert (extra["family"], extra["memory_strategy"], extra["dtype"]) == ("sd15", "on_device", "float32")
        assert "offloading needs CUDA" in extra["memory_strategy_reason"]
        assert loaded.record.backend == "diffusers-sd15" and loaded.record.scheduler == "DDIMScheduler"
        assert not np.array_equal(pixels(loaded.image), pixels(from_folder.generate(request(seed=4)).image))
    finally:
        pools.clear(from_folder.pool_key)
        pools.clear(in_code.pool_key)


def test_pickle_checkpoints_are_refused_on_every_path(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeCheckpoint, match="CONTENTFORGE_ALLOW_PICKLE=1"):
        load_pipeline(str(checkpoint), "sd15", torch.float32, allow_pickle=False)
    folder = tmp_path / "pickled"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeCheckpoint, match=r"diffusion_pytorch_model\.bin"):
        load_pipeline(str(folder), "sd15", torch.float32, allow_pickle=False)
    with pytest.raises(UnsafeCheckpoint):
        from contentforge.images.diffusers_backend import DiffusersBackend

        DiffusersBackend.from_settings(settings(image_profile="model", image_model=str(checkpoint)))


def test_single_file_goes_through_from_single_file_with_the_local_config(
    monkeypatch: pytest.MonkeyPatch, sd15_folder: Path, tmp_path: Path
) -> None:
    """Our wiring of ``from_single_file`` (the conversion of an original-layout checkpoint is diffusers')."""
    from diffusers import StableDiffusionXLPipeline

    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_from_single_file(cls: type, path: str, **kwargs: Any) -> str:
        calls.append((path, kwargs))
        return "pipeline"

    monkeypatch.setattr(StableDiffusionXLPipeline, "from_single_file", classmethod(fake_from_single_file))
    single = tmp_path / "sdxl.safetensors"
    save_file({"conditioner.embedders.1.model.x": torch.zeros(1)}, str(single))
    assert (
        load_pipeline(
            str(single), "sdxl", torch.bfloat16, allow_pickle=False, single_file_config=str(sd15_folder)
        )
        == "pipeline"
    )
    path, kwargs = calls[0]
    assert path == str(single)
    assert kwargs == {dtype_kwarg(): torch.bfloat16, "config": str(sd15_folder), "local_files_only": True}


def test_a_broken_folder_fails_with_one_line(tmp_path: Path) -> None:
    from contentforge.errors import GenerationFailed

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]})
    )
    with pytest.raises((GenerationFailed, InvalidInput)) as exc:
        load_pipeline(str(folder), "sd15", torch.float32, allow_pickle=False)
    assert "\n" not in str(exc.value) and str(folder) in str(exc.value)


# -- memory strategies ----------------------------------------------------------------------------

GIB = 1024**3


@pytest.mark.parametrize(
    ("free_gib", "expected"),
    [
        (80, "full_gpu"),
        (12, "full_gpu"),
        (8, "model_cpu_offload"),
        (3, "group_offload"),
        (1, "sequential_cpu_offload"),
    ],
)
def test_auto_strategy_follows_free_vram(free_gib: int, expected: str) -> None:
    strategy, reason = memory.choose_strategy("auto", "cuda", 7 * GIB, free_gib * GIB)  # SDXL fp16 ~7 GB
    assert strategy == expected
    assert reason.startswith("auto:") and f"{free_gib:.1f} GiB" in reason


def test_strategy_choices_outside_cuda() -> None:
    assert memory.choose_strategy("full_gpu", "cuda:0", GIB, 0) == (
        "full_gpu",
        "CONTENTFORGE_IMAGE_MEMORY_STRATEGY=full_gpu",
    )
    assert memory.choose_strategy("auto", "cuda", GIB, None)[0] == "model_cpu_offload"
    for device in ("cpu", "mps"):
        strategy, reason = memory.choose_strategy("auto", device, GIB, None)
        assert strategy == memory.ON_DEVICE and device in reason
        for offload in memory.OFFLOAD_STRATEGIES:
            with pytest.raises(InvalidInput, match=f"{offload} needs a CUDA device"):
                memory.choose_strategy(offload, device, GIB, None)
    with pytest.raises(InvalidInput, match="unknown memory strategy"):
        memory.choose_strategy("turbo", "cuda", GIB, GIB)


def test_offload_strategy_on_cpu_fails_before_loading() -> None:
    from contentforge.images.diffusers_backend import DiffusersBackend

    with pytest.raises(InvalidInput, match="model_cpu_offload needs a CUDA device"):
        DiffusersBackend.from_settings(
            settings(image_profile="tiny", image_device="cpu", image_memory_strategy="model_cpu_offload")
        )


def test_quantization_is_skipped_with_a_reason_when_no_backend_is_installed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import importlib.util

    assert memory.quantization_config("none", "sdxl") == (
        None,
        "no quantization (CONTENTFORGE_IMAGE_QUANTIZATION=none)",
    )
    config, reason = memory.quantization_config("bnb_4bit", "flux")
    if importlib.util.find_spec("bitsandbytes") is None:
        assert config is None and "bitsandbytes is not installed" in reason
    else:
        assert config is not None and "transformer" in reason
    with pytest.raises(InvalidInput, match="unknown quantization"):
        memory.quantization_config("fp4", "sdxl")


@pytest.mark.slow
def test_vae_slicing_and_tiling_are_applied_and_recorded(sd15_folder: Path) -> None:
    from contentforge.images.diffusers_backend import DiffusersBackend

    backend = DiffusersBackend.from_settings(
        settings(
            image_profile="model",
            image_model=str(sd15_folder),
            image_device="cpu",
            image_vae_slicing=True,
            image_vae_tiling=True,
            image_memory_budget_mb=64,
        )
    )
    try:
        result = backend.generate(request())
        vae = pools.get_pool(backend.pool_key, lambda: pytest.fail("not loaded")).base.vae
        assert vae.use_slicing and vae.use_tiling
        assert result.record.extra["memory_options"] == "vae_slicing,vae_tiling"
        assert "64 MB" in backend.describe()
    finally:
        pools.clear(backend.pool_key)


@pytest.mark.slow
def test_bad_lora_family_or_file_fails_the_piece(tmp_path: Path) -> None:
    """An SDXL LoRA does not fit the SD1.5 pipeline: a clear InvalidLora, and the backend keeps working."""
    from contentforge.domain import LoraSpec
    from contentforge.images.diffusers_backend import DiffusersBackend
    from contentforge.images.tiny import build_tiny_lora, build_tiny_sdxl_pipeline

    sdxl_lora = build_tiny_lora(build_tiny_sdxl_pipeline(0), tmp_path / "sdxl_lora.safetensors", seed=1)
    backend = DiffusersBackend.from_settings(
        settings(image_profile="tiny", image_family="sd15", image_device="cpu")
    )
    try:
        with pytest.raises(
            InvalidLora, match=r"sdxl_lora\.safetensors does not load into tiny-sd15.*\(sd15\)"
        ) as exc:
            backend.generate(request(loras=(LoraSpec(source=str(sdxl_lora)),)))
        assert "\n" not in str(exc.value)
        assert backend.loaded_lora_adapters() == []
        assert pixels(backend.generate(request()).image).std() > 5
    finally:
        pools.clear(backend.pool_key)


@pytest.mark.slow
def test_logs_say_which_strategy_was_chosen(caplog: pytest.LogCaptureFixture) -> None:
    from contentforge.images.diffusers_backend import DiffusersBackend

    backend = DiffusersBackend.from_settings(
        settings(image_profile="tiny", image_family="sd15", image_device="cpu")
    )
    try:
        with caplog.at_level(logging.INFO, logger="contentforge.images.diffusers_backend"):
            backend.warm_up()
        assert any("memory strategy on_device" in r.getMessage() for r in caplog.records)
        assert backend.load_info().strategy == "on_device" and backend.load_info().size_bytes > 0
    finally:
        pools.clear(backend.pool_key)
