"""The model pool: LRU eviction under a memory budget, and eviction really freeing the weights."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import torch

from contentforge.config import Settings
from contentforge.images import memory
from contentforge.images import pool as pools
from contentforge.images.protocol import ImageRequest

MB = 2**20


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def fake_loader(megabytes: int, loads: list[str], name: str) -> Any:
    def load() -> tuple[torch.nn.Module, list[str]]:
        loads.append(name)
        module = torch.nn.Module()
        module.weight = torch.nn.Parameter(torch.ones(megabytes * MB // 4), requires_grad=False)
        return module, ["replica"]

    return load


def key(name: str) -> pools.PoolKey:
    return pools.PoolKey(model=name, dtype="float32", device="cpu", strategy="auto")


@pytest.fixture(autouse=True)
def empty_pool() -> Any:
    pools.clear()
    yield
    pools.clear()


def test_pool_sizes_and_lru_eviction_within_the_budget() -> None:
    loads: list[str] = []
    budget = 25 * MB
    a = pools.get_pool(key("a"), fake_loader(10, loads, "a"), budget)
    assert a.size_bytes == 10 * MB
    pools.get_pool(key("b"), fake_loader(10, loads, "b"), budget)
    assert pools.loaded_bytes() == 20 * MB
    # Using "a" makes "b" the least recently used one.
    assert pools.get_pool(key("a"), fake_loader(10, loads, "a"), budget) is a
    pools.get_pool(key("c"), fake_loader(10, loads, "c"), budget)
    assert pools.loaded_keys() == [key("a"), key("c")]
    assert pools.loaded_bytes() == 20 * MB
    assert loads == ["a", "b", "c"]
    # make_room before placing a model: frees the least recently used until the new size fits.
    assert pools.make_room(15 * MB, budget, keep=key("c")) == [key("a")]
    assert pools.loaded_keys() == [key("c")]
    # The only pool left is kept even if it alone exceeds the budget (the strategy must make it fit).
    pools.get_pool(key("big"), fake_loader(30, loads, "big"), budget)
    assert pools.loaded_keys() == [key("big")]


def test_same_model_with_another_strategy_is_another_pool() -> None:
    loads: list[str] = []
    first = pools.get_pool(pools.PoolKey("m", "float16", "cuda", "full_gpu"), fake_loader(1, loads, "x"))
    second = pools.get_pool(
        pools.PoolKey("m", "float16", "cuda", "model_cpu_offload"), fake_loader(1, loads, "y")
    )
    assert first is not second and loads == ["x", "y"]


def test_eviction_releases_resident_memory() -> None:
    """RSS drops by (nearly) the weights' size when the pool is evicted: the memory goes back to the OS."""
    loads: list[str] = []
    gc.collect()
    before = memory.rss_bytes()
    pool = pools.get_pool(key("big"), fake_loader(256, loads, "big"))
    ref = weakref.ref(pool.base.weight)
    loaded = memory.rss_bytes()
    assert loaded - before > 200 * MB
    del pool
    pools.make_room(1, budget_bytes=1)  # the budget forces the eviction
    assert pools.loaded_keys() == []
    assert ref() is None
    after = memory.rss_bytes()
    assert loaded - after > 200 * MB, f"RSS {before / MB:.0f} -> {loaded / MB:.0f} -> {after / MB:.0f} MB"


@pytest.mark.slow
def test_loading_a_second_model_over_budget_frees_the_first_pipeline() -> None:
    """Two tiny pipelines (SDXL ~1.8 MB, SD1.5 ~1.4 MB) under a 2 MB budget: the first one is collected."""
    from contentforge.images.diffusers_backend import DiffusersBackend

    sdxl = DiffusersBackend.from_settings(
        settings(image_profile="tiny", image_device="cpu", image_memory_budget_mb=2, image_replicas=2)
    )
    sd15 = DiffusersBackend.from_settings(
        settings(image_profile="tiny", image_family="sd15", image_device="cpu", image_memory_budget_mb=2)
    )
    request = ImageRequest(prompt="a cat", seed=1, steps=2, guidance_scale=5.0, width=64, height=64)
    sdxl.generate(request)
    base = pools.get_pool(sdxl.pool_key, lambda: pytest.fail("not loaded")).base
    unet_ref, weight_ref = weakref.ref(base.unet), weakref.ref(next(base.unet.parameters()))
    del base
    assert sdxl.load_info().size_bytes > MB
    sd15.generate(request)
    gc.collect()
    assert pools.loaded_keys() == [sd15.pool_key]
    assert unet_ref() is None and weight_ref() is None, "the evicted pipeline is still referenced"
    # The evicted model reloads on its next use (and then evicts the other one).
    assert sdxl.generate(request).image.size == (64, 64)
    assert pools.loaded_keys() == [sdxl.pool_key]


def test_default_budget_is_detected() -> None:
    budget, reason = memory.default_budget_bytes("cpu")
    assert budget == int(memory.total_ram_bytes() * memory.CPU_BUDGET_SHARE) and "RAM" in reason
    assert memory.module_bytes(torch.nn.Linear(10, 10)) == (100 + 10) * 4
    shared = torch.nn.Linear(4, 4)
    assert memory.module_bytes(torch.nn.Sequential(shared, shared)) == (16 + 4) * 4
