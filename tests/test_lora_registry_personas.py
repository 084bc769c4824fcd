"""A persona's LoRA can name a registry entry (``registry:<name>``): resolved per piece, checked up front."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from contentforge.batch import image_request_for, validate_batch_request
from contentforge.config import Settings
from contentforge.db import Repository, make_engine, migrate
from contentforge.domain import LoraSpec, Persona
from contentforge.errors import InvalidLora
from contentforge.images import pool as pools
from contentforge.images.factory import reset_image_backends
from contentforge.personas import sample_persona


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from contentforge.images.tiny import build_tiny_lora, build_tiny_sdxl_pipeline

    folder = tmp_path_factory.mktemp("loras")
    return build_tiny_lora(build_tiny_sdxl_pipeline(0), folder / "anna.safetensors", 1)


@pytest.fixture
def registry(tmp_path: Path, lora_file: Path) -> Path:
    path = tmp_path / "loras.yaml"
    path.write_text(
        f"anna: {{source: {lora_file}, trigger_word: TOK_anna, default_scale: 0.6, base_family: sdxl}}\n"
        f"plain: {{source: {lora_file}, base_family: sdxl}}\n"
        "flux_style: {source: someone/flux-style, weight_name: style.safetensors, base_family: flux}\n"
    )
    return path


@pytest.fixture(autouse=True)
def _fresh_backends() -> Iterator[None]:
    reset_image_backends()
    yield
    reset_image_backends()


def settings(registry: Path | None) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, image_profile="tiny", image_device="cpu", image_lora_registry=registry
    )


def persona_with(lora: LoraSpec) -> Persona:
    return sample_persona().model_copy(update={"lora": lora})


def piece(persona: Persona, text: str = "in a cafe, soft light") -> Any:
    return SimpleNamespace(prompt=f"{persona.trigger_word}, {text}", negative_prompt="blurry", seed=3)


def test_registry_entry_gives_source_trigger_and_default_scale(registry: Path, lora_file: Path) -> None:
    persona = persona_with(LoraSpec(source="registry:anna"))
    assert persona.trigger_word == f"TOK_{persona.id[:8]}"  # what the prompt was planned with
    request = image_request_for(piece(persona), persona, settings(registry))
    (lora,) = request.loras
    assert (lora.source, lora.trigger_word, lora.scale) == (str(lora_file), "TOK_anna", 0.6)
    # The registry's trigger word replaces the planned one, once, at the start.
    assert request.prompt == "TOK_anna, in a cafe, soft light"
    assert request.negative_prompt == "blurry" and request.seed == 3


def test_persona_scale_overrides_and_persona_trigger_fills_a_gap(registry: Path, lora_file: Path) -> None:
    persona = persona_with(LoraSpec(source="registry:anna", scale=0.3))
    assert image_request_for(piece(persona), persona, settings(registry)).loras[0].scale == 0.3

    # The entry has no trigger word: the persona's own stays, and so does the prompt.
    persona = persona_with(LoraSpec(source="registry:plain", trigger_word="TOK_me", scale=1.2))
    request = image_request_for(piece(persona), persona, settings(registry))
    assert (request.loras[0].trigger_word, request.loras[0].scale) == ("TOK_me", 1.2)
    assert request.prompt == "TOK_me, in a cafe, soft light"

    # A prompt without the planned trigger gets the registry's first.
    persona = persona_with(LoraSpec(source="registry:anna"))
    odd = SimpleNamespace(prompt="a quiet street at dawn", negative_prompt="", seed=1)
    assert image_request_for(odd, persona, settings(registry)).prompt == "TOK_anna, a quiet street at dawn"


def test_file_and_hub_loras_are_passed_unchanged(registry: Path, lora_file: Path) -> None:
    spec = LoraSpec(source=str(lora_file), trigger_word="TOK_x", scale=0.5)
    persona = persona_with(spec)
    request = image_request_for(piece(persona), persona, settings(registry))
    assert request.loras == (spec,) and request.prompt == "TOK_x, in a cafe, soft light"


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    url = f"sqlite:///{tmp_path / 'cf.db'}"
    migrate(url)
    return Repository(make_engine(url))


def validate(repo: Repository, persona: Persona, config: Settings) -> Any:
    repo.upsert_persona(persona)
    return validate_batch_request(
        repo,
        config,
        persona=persona.id,
        num_pieces=2,
        platform=persona.platforms[0].value,
        tier_mix=None,
        seed=1,
    )


def test_batch_validation_refuses_bad_registry_loras_before_generation(
    repo: Repository, registry: Path
) -> None:
    checked = validate(repo, persona_with(LoraSpec(source="registry:anna")), settings(registry))
    assert checked.persona.lora.source == "registry:anna"  # stored as named; resolved per piece

    cases = [
        ("registry:carl", registry, r"unknown LoRA 'carl' \(registered: anna, flux_style, plain\)"),
        ("registry:flux_style", registry, "trained for flux, but the model is sdxl"),
        ("registry:anna", None, "names a registry entry, but CONTENTFORGE_IMAGE_LORA_REGISTRY is not set"),
    ]
    for source, path, message in cases:
        with pytest.raises(InvalidLora, match=message) as caught:
            validate(repo, persona_with(LoraSpec(source=source)), settings(path))
        assert "\n" not in str(caught.value)
    # Nothing was loaded on the way: the checks ran before any pipeline.
    assert pools.loaded_keys() == []


def test_changed_registered_file_is_refused(repo: Repository, tmp_path: Path, lora_file: Path) -> None:
    path = tmp_path / "pinned.yaml"
    path.write_text(f"anna: {{source: {lora_file}, base_family: sdxl, sha256: '{'0' * 64}'}}\n")
    with pytest.raises(InvalidLora, match=r"'anna': .* changed"):
        validate(repo, persona_with(LoraSpec(source="registry:anna")), settings(path))


@pytest.mark.slow
def test_tiny_generation_uses_the_registry_lora(registry: Path, lora_file: Path) -> None:
    import numpy as np

    from contentforge.images.factory import build_image_backend

    config = settings(registry)
    persona = persona_with(LoraSpec(source="registry:anna"))
    backend = build_image_backend(config)
    try:
        with_lora = backend.generate(image_request_for(piece(persona), persona, config))
        (ref,) = with_lora.record.loras
        assert (ref.source, ref.scale) == (str(lora_file), 0.6) and ref.sha256
        assert with_lora.record.prompt.startswith("TOK_anna, ")
        plain = persona.model_copy(update={"lora": None})
        without = backend.generate(image_request_for(piece(plain), plain, config))
        assert without.record.loras == ()
        # Same seed: the difference in pixels is the LoRA's (and its trigger word's).
        diff = np.abs(np.asarray(with_lora.image, np.int16) - np.asarray(without.image, np.int16))
        assert diff.mean() > 1
    finally:
        pools.clear()
