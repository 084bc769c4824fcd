"""LoRA registry, several adapters with weights, and unloading that frees the adapter."""

from __future__ import annotations

import gc
import hashlib
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contentforge.config import Settings
from contentforge.errors import InvalidInput, InvalidLora
from contentforge.images import pool as pools
from contentforge.images.loras import LoraRegistry
from contentforge.images.protocol import ImageRequest


def request(loras: tuple[Any, ...] = ()) -> ImageRequest:
    return ImageRequest(
        prompt="TOK_anna in a cafe", seed=5, steps=3, guidance_scale=5.0, width=64, height=64, loras=loras
    )


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from contentforge.images.tiny import build_tiny_lora, build_tiny_sdxl_pipeline

    folder = tmp_path_factory.mktemp("loras")
    pipe = build_tiny_sdxl_pipeline(0)
    return build_tiny_lora(pipe, folder / "anna.safetensors", 1), build_tiny_lora(
        pipe, folder / "ben.safetensors", 2
    )


@pytest.fixture(scope="module")
def backend() -> Iterator[Any]:
    from contentforge.images.diffusers_backend import DiffusersBackend

    built = DiffusersBackend.from_settings(Settings(_env_file=None, image_profile="tiny", image_device="cpu"))  # type: ignore[call-arg]
    yield built
    pools.clear(built.pool_key)


def test_registry_resolves_names_scales_triggers_and_refuses_misfits(
    lora_files: tuple[Path, Path], tmp_path: Path
) -> None:
    anna, ben = lora_files
    digest = hashlib.sha256(anna.read_bytes()).hexdigest()
    path = tmp_path / "loras.yaml"
    path.write_text(
        f"anna: {{source: {anna}, trigger_word: TOK_anna, default_scale: 0.7, base_family: sdxl,\n"
        f"       sha256: '{digest}'}}\n"
        f"ben: {{source: {ben}, base_family: sdxl, sha256: '{'0' * 64}'}}\n"
        f"flux_style: {{source: someone/flux-style, weight_name: style.safetensors, base_family: flux}}\n"
    )
    registry = LoraRegistry.load(path)
    specs, triggers = registry.resolve(["anna"], "sdxl")
    assert [(s.source, s.scale) for s in specs] == [(str(anna), 0.7)] and triggers == ["TOK_anna"]
    assert registry.resolve([("anna", 0.3)], "sdxl")[0][0].scale == 0.3
    with pytest.raises(InvalidLora, match="trained for flux, but the model is sdxl"):
        registry.resolve(["flux_style"], "sdxl")
    with pytest.raises(InvalidLora, match="changed"):
        registry.resolve(["ben"], "sdxl")
    with pytest.raises(InvalidLora, match="unknown LoRA 'carl'"):
        registry.resolve(["carl"], "sdxl")
    bad = tmp_path / "bad.yaml"
    bad.write_text("anna: {source: x.safetensors, base_family: sd3}\n")
    with pytest.raises(InvalidInput, match=r"bad\.yaml"):
        LoraRegistry.load(bad)


@pytest.mark.slow
def test_two_weighted_loras_change_the_image_and_unloading_restores_and_frees(
    backend: Any, lora_files: tuple[Path, Path]
) -> None:
    from contentforge.domain import LoraSpec

    anna, ben = lora_files
    pixels = lambda r: np.asarray(backend.generate(r).image, np.int16)  # noqa: E731
    base = pixels(request())
    both = pixels(request((LoraSpec(source=str(anna), scale=1.0), LoraSpec(source=str(ben), scale=1.0))))
    reweighted = pixels(
        request((LoraSpec(source=str(anna), scale=1.0), LoraSpec(source=str(ben), scale=0.2)))
    )
    only_anna = pixels(request((LoraSpec(source=str(anna), scale=1.0),)))
    assert np.abs(both - base).mean() > 0.5
    assert not np.array_equal(both, reweighted) and not np.array_equal(both, only_anna)
    assert len(backend.loaded_lora_adapters()) == 2

    unet = pools.get_pool(backend.pool_key, lambda: pytest.fail("not loaded")).base.unet
    names = backend.loaded_lora_adapters()
    layer = next(m for n, m in unet.named_modules() if n.endswith(f"lora_A.{names[0]}"))
    ref = weakref.ref(layer.weight)
    del layer
    assert backend.unload_lora(LoraSpec(source=str(anna))) is True
    assert backend.unload_lora(LoraSpec(source=str(anna))) is False
    assert backend.unload_lora(LoraSpec(source=str(ben))) is True
    gc.collect()
    assert ref() is None, "the unloaded adapter's weights are still referenced"
    assert backend.loaded_lora_adapters() == []
    assert not any("lora_A" in n and names[0] in n for n, _ in unet.named_modules())
    assert np.array_equal(pixels(request()), base)
    # ...and it loads again on demand.
    assert np.array_equal(pixels(request((LoraSpec(source=str(anna), scale=1.0),))), only_anna)


@pytest.mark.slow
def test_fused_loras_match_unfused_switch_and_unload_cleanly(lora_files: tuple[Path, Path]) -> None:
    """CONTENTFORGE_IMAGE_LORA_FUSE: same images (to rounding) as adapters, across persona switches."""
    from peft.tuners.lora import LoraLayer

    from contentforge.domain import LoraSpec
    from contentforge.images.diffusers_backend import DiffusersBackend

    anna, ben = lora_files
    two = (LoraSpec(source=str(anna), scale=1.0), LoraSpec(source=str(ben), scale=0.5))
    only_ben = (LoraSpec(source=str(ben), scale=1.0),)

    def build(fuse: bool) -> Any:
        options: dict[str, Any] = {"image_profile": "tiny", "image_device": "cpu", "image_lora_fuse": fuse}
        return DiffusersBackend.from_settings(Settings(_env_file=None, **options))  # type: ignore[call-arg]

    unfused, fused = build(False), build(True)
    assert unfused.pool_key == fused.pool_key and "fused into the weights" in fused.describe()
    pools.clear(unfused.pool_key)  # fresh weights: earlier tests' adapters must not be in the reference
    try:
        array = lambda backend, loras: backend.generate_arrays([request(loras)])[0]  # noqa: E731
        base = array(unfused, ())
        reference_two, reference_ben = array(unfused, two), array(unfused, only_ben)
        assert (
            np.abs(reference_two - base).mean() > 1e-3 and np.abs(reference_ben - reference_two).mean() > 1e-3
        )

        unet = pools.get_pool(fused.pool_key, lambda: pytest.fail("not loaded")).base.unet
        lora_layers = [m for m in unet.modules() if isinstance(m, LoraLayer)]
        merged = lambda: {name for layer in lora_layers for name in layer.merged_adapters}  # noqa: E731
        assert np.abs(array(fused, two) - reference_two).max() < 1e-4
        assert len(merged()) == 2, "the two adapters were not fused into the weights"
        # Switching persona after fusing: the previous set is unfused, the new one fused.
        assert np.abs(array(fused, only_ben) - reference_ben).max() < 1e-4
        assert len(merged()) == 1
        # An unfused backend on the same pool runs on unfused weights, not on the fused set.
        assert np.abs(array(unfused, only_ben) - reference_ben).max() < 1e-4 and not merged()

        fused_image, plain_image = fused.generate(request(only_ben)), unfused.generate(request(only_ben))
        assert fused_image.record.extra["lora_fused"] == "true"
        assert "lora_fused" not in plain_image.record.extra
        assert "lora_fused" not in fused.generate(request()).record.extra  # no LoRA, nothing fused
        assert fused_image.record.fingerprint() != plain_image.record.fingerprint()

        # Unloading unfuses first: the base image comes back (to rounding) and no adapter is left.
        assert fused.unload_lora(only_ben[0]) is True and fused.unload_lora(two[0]) is True
        assert fused.loaded_lora_adapters() == [] and not merged()
        assert np.abs(array(fused, ()) - base).max() < 1e-4
    finally:
        pools.clear(unfused.pool_key)


def test_the_lora_family_check_learns_the_model_family_without_building_a_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The family a registry LoRA must match is the one the backend would load, and no backend is built."""
    import json

    from contentforge.images import factory, loras
    from contentforge.images.diffusers_backend import DiffusersBackend

    def built(_: Settings) -> Any:
        raise AssertionError("a backend was built to learn the model family")

    monkeypatch.setattr(factory, "build_image_backend", built)
    folder = tmp_path / "sd15-model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    cases: list[dict[str, Any]] = [
        {"image_profile": "tiny"},
        {"image_profile": "tiny", "image_family": "sd15"},
        {"image_profile": "tiny", "image_family": "flux"},
        {"image_profile": "model", "image_model": str(folder)},
        {"image_profile": "model", "image_model": str(folder), "image_family": "sdxl"},
    ]
    for options in cases:
        config = Settings(_env_file=None, image_device="cpu", **options)  # type: ignore[call-arg]
        assert loras._configured_family(config) == DiffusersBackend.from_settings(config).family, options
    for profile in ("fixed-latency", "replicate"):
        assert loras._configured_family(Settings(_env_file=None, image_profile=profile)) is None  # type: ignore[call-arg]
    with pytest.raises(InvalidInput, match="no such file or folder"):
        loras._configured_family(
            Settings(_env_file=None, image_profile="model", image_model=str(tmp_path / "x"))
        )  # type: ignore[call-arg]
