"""On CPU a process runs only as many generations as its cores allow, and holds no more slots than that."""

from __future__ import annotations

import pytest

from contentforge.config import Settings
from contentforge.images import cpu_sizing as sizing
from contentforge.images.diffusers_backend import DiffusersBackend
from contentforge.images.fixed_latency import FixedLatencyBackend


def _settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cores", "concurrency", "threads"),
    [(1, 1, 1), (2, 1, 1), (4, 1, 3), (8, 2, 3), (16, 4, 3), (64, 5, 12)],
)
def test_auto_sizing_splits_the_cores(cores: int, concurrency: int, threads: int) -> None:
    chosen = sizing.cpu_sizing(cores=cores)
    assert (chosen.concurrency, chosen.threads) == (concurrency, threads)
    assert f"{cores} core(s)" in chosen.reason


def test_configured_replicas_and_threads_win_and_are_named() -> None:
    chosen = sizing.cpu_sizing(replicas=3, threads=0, cores=12)
    assert (chosen.concurrency, chosen.threads) == (3, 3)
    assert "CONTENTFORGE_IMAGE_REPLICAS=3" in chosen.reason
    chosen = sizing.cpu_sizing(replicas=2, threads=7, cores=2)
    assert (chosen.concurrency, chosen.threads) == (2, 7)
    assert "CONTENTFORGE_IMAGE_THREADS=7" in chosen.reason


def test_cpu_backend_is_sized_to_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sizing, "available_cores", lambda: 2)
    backend = DiffusersBackend.from_settings(_settings(image_profile="tiny", image_device="cpu"))
    assert (backend.replicas, backend.cpu_threads, backend.max_concurrent) == (1, 1, 1)
    assert "2 core(s)" in backend.describe()
    # A process with that backend holds one slot of the 5, leaving the others to other workers.
    assert sizing.local_generation_limit(backend, 5) == 1
    monkeypatch.setattr(sizing, "available_cores", lambda: 32)
    backend = DiffusersBackend.from_settings(_settings(image_profile="tiny", image_device="cpu"))
    assert (backend.replicas, backend.cpu_threads) == (5, 6)
    assert sizing.local_generation_limit(backend, 3) == 3, "the global limit stays the ceiling"


def test_backends_without_a_local_bound_use_every_slot() -> None:
    assert sizing.local_generation_limit(FixedLatencyBackend(0.0), 5) == 5
    assert sizing.local_generation_limit(object(), 5) == 5


def test_gpu_sizing_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    from contentforge.images import diffusers_backend

    monkeypatch.setattr(diffusers_backend, "resolve_device", lambda _device: ("cuda", "test"))
    backend = DiffusersBackend.from_settings(
        _settings(image_profile="tiny", image_device="cuda", image_memory_budget_mb=100)
    )
    assert (backend.replicas, backend.cpu_threads, backend.max_concurrent) == (5, None, None)
