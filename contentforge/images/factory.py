"""Pick the image backend from configuration, once per process per relevant settings.

Callers (tasks, CLI, benchmarks) ask for a backend per call; caching here means the heavy pipeline is
built once and the same backend object (and its pool) is reused by every thread.
"""

from __future__ import annotations

import hashlib
import threading

from pydantic import SecretStr

from contentforge.config import Settings
from contentforge.errors import InvalidInput
from contentforge.images.protocol import ImageBackend

_BACKENDS: dict[tuple[object, ...], ImageBackend] = {}
_LOCK = threading.Lock()


def backend_key(settings: Settings) -> tuple[object, ...]:
    """The settings that change which backend is built or how it behaves."""
    return (
        settings.image_profile,
        settings.image_model,
        settings.image_device,
        settings.image_replicas,
        settings.image_threads,
        settings.image_cost_usd,
        settings.fixed_latency_s,
        settings.allow_pickle,
        settings.image_family,
        settings.image_single_file_config,
        settings.image_memory_strategy,
        settings.image_memory_budget_mb,
        settings.image_vae_slicing,
        settings.image_vae_tiling,
        settings.image_quantization,
        settings.image_micro_batch,
        settings.image_lora_fuse,
        settings.replicate_base_url,
        settings.replicate_model,
        settings.replicate_cost_usd,
        settings.replicate_timeout_s,
        # A rotated token rebuilds the backend; the key holds a digest, never the token itself.
        _digest(settings.replicate_api_token),
    )


def _digest(secret: SecretStr | None) -> str | None:
    if secret is None:
        return None
    return hashlib.sha256(secret.get_secret_value().encode()).hexdigest()


def build_image_backend(settings: Settings) -> ImageBackend:
    """The process-wide backend for ``settings.image_profile`` (tiny, model, fixed-latency, replicate)."""
    key = backend_key(settings)
    with _LOCK:
        backend = _BACKENDS.get(key)
        if backend is None:
            backend = _build(settings)
            _BACKENDS[key] = backend
        return backend


def _build(settings: Settings) -> ImageBackend:
    profile = settings.image_profile
    if profile == "fixed-latency":
        from contentforge.images.fixed_latency import FixedLatencyBackend

        return FixedLatencyBackend.from_settings(settings)
    if profile == "replicate":
        from contentforge.images.replicate_backend import ReplicateBackend

        return ReplicateBackend.from_settings(settings)
    if profile in ("tiny", "model"):
        # Imported here so that the fixed-latency profile never pays for importing torch and diffusers.
        from contentforge.images.diffusers_backend import DiffusersBackend

        return DiffusersBackend.from_settings(settings)
    raise InvalidInput(f"unknown image profile {profile!r} (use tiny, model, fixed-latency or replicate)")


def reset_image_backends() -> None:
    """Forget cached backends and free loaded pipelines (tests, or switching models in a long process)."""
    with _LOCK:
        _BACKENDS.clear()
    from contentforge.images import pool

    pool.clear()
