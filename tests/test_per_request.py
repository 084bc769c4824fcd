"""Per-request control (issue 16, item 9): a scheduler for one request only, template or custom prompt
and parameters through the API and ``contentforge produce`` (refused in one line before any model
loads), variations as pieces derived from their parent, and ``registry:<name>`` through the database
registry."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from contentforge.config import Settings
from contentforge.images.protocol import ImageRequest


def _tiny(settings_env: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"data_dir": settings_env, "image_profile": "tiny", "image_replicas": 2}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def _request(**changes: object) -> ImageRequest:
    base = ImageRequest(prompt="a lighthouse", seed=3, steps=2, guidance_scale=5.0, width=64, height=64)
    return base.model_copy(update=changes)


def test_a_scheduler_applies_to_its_request_only_and_is_recorded(settings_env: Path) -> None:
    from contentforge.images.factory import build_image_backend

    backend = build_image_backend(_tiny(settings_env))
    before = backend.generate(_request())
    assert before.record.scheduler == "EulerDiscreteScheduler"  # the tiny SDXL's own
    chosen = backend.generate(_request(scheduler="EulerAncestralDiscreteScheduler"))
    assert chosen.record.scheduler == "EulerAncestralDiscreteScheduler"
    assert not np.array_equal(np.asarray(chosen.image), np.asarray(before.image))
    after = backend.generate(_request())
    assert after.record.scheduler == "EulerDiscreteScheduler"
    assert np.array_equal(np.asarray(after.image), np.asarray(before.image))  # nothing leaked

    # Two requests at once on the two replicas of one pool: each runs (and records) its own.
    results: dict[str, str | None] = {}

    def run(name: str | None) -> None:
        results[str(name)] = backend.generate(_request(scheduler=name)).record.scheduler

    threads = [threading.Thread(target=run, args=(name,)) for name in ("DDIMScheduler", None)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"DDIMScheduler": "DDIMScheduler", "None": "EulerDiscreteScheduler"}


def test_replay_carries_the_recorded_scheduler_and_checks_refuse_unfit_ones(settings_env: Path) -> None:
    from contentforge.errors import InvalidInput
    from contentforge.images.factory import build_image_backend
    from contentforge.models.requests import checked_for_settings, checked_params, replay_request

    generated = build_image_backend(_tiny(settings_env)).generate(_request(scheduler="DDIMScheduler"))
    assert replay_request(generated.record).scheduler == "DDIMScheduler"
    assert checked_params("sdxl", scheduler="euler_a").scheduler == "EulerAncestralDiscreteScheduler"
    with pytest.raises(InvalidInput, match="flux models take flow_match_euler"):
        checked_params("flux", scheduler="ddim")
    with pytest.raises(InvalidInput, match="scheduler: the fixed-latency image profile picks its own"):
        checked_for_settings(_tiny(settings_env, image_profile="fixed-latency"), scheduler="euler")


def test_registry_names_resolve_through_the_database_registry(settings_env: Path, tmp_path: Path) -> None:
    from contentforge.db.registry import ModelRegistry
    from contentforge.domain import LoraSpec
    from contentforge.errors import InvalidLora
    from contentforge.images.loras import resolve_persona_lora
    from contentforge.images.tiny import build_tiny_lora, build_tiny_sdxl_pipeline
    from contentforge.models.install import install_local
    from contentforge_cli import context

    lora = build_tiny_lora(build_tiny_sdxl_pipeline(0), tmp_path / "grain.safetensors", seed=2)
    registry = ModelRegistry(context.services().sessions)
    install_local(lora, kind="lora", registry=registry, name="grain", trigger_words=("grainy35",), weight=0.6)
    settings = _tiny(settings_env)
    resolved = resolve_persona_lora(LoraSpec(source="registry:grain"), settings)
    assert (resolved.source, resolved.trigger_word, resolved.scale) == (str(lora), "grainy35", 0.6)
    assert resolve_persona_lora(LoraSpec(source="registry:grain", scale=0.3), settings).scale == 0.3
    # A YAML registry that lacks the name still finds the installed one.
    yaml_file = tmp_path / "loras.yaml"
    yaml_file.write_text(f"other: {{source: {lora}, base_family: sdxl}}\n")
    with_yaml = _tiny(settings_env, image_lora_registry=yaml_file)
    assert resolve_persona_lora(LoraSpec(source="registry:grain"), with_yaml).source == str(lora)
    with pytest.raises(InvalidLora, match=r"unknown LoRA 'nope' \(registered: other\) and no LoRA"):
        resolve_persona_lora(LoraSpec(source="registry:nope"), with_yaml)
    with pytest.raises(InvalidLora, match="trained for sdxl, but the model is flux"):
        resolve_persona_lora(LoraSpec(source="registry:grain"), _tiny(settings_env, image_family="flux"))
    lora.write_bytes(lora.read_bytes()[:-4] + b"    ")  # same header, other weights
    with pytest.raises(InvalidLora, match="changed since it was installed"):
        resolve_persona_lora(LoraSpec(source="registry:grain"), settings)
