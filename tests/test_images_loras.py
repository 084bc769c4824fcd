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
