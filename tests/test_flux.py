"""Flux through the diffusers backend, offline: a tiny random-weight FluxPipeline saved to a folder.

The pipeline (CLIP + T5 text encoders, MM-DiT transformer, Flux VAE, flow-matching scheduler) and its T5
tokenizer are built in code (``contentforge.images.tiny``), so the whole Flux path runs without a download:
family detection, loading, seeded generation, micro-batches, T5 truncation with a warning, LoRAs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contentforge.config import Settings
from contentforge.domain import LoraSpec
from contentforge.images import pool as pools
from contentforge.images.loading import detect_family
from contentforge.images.protocol import ImageRequest

BACKEND_LOGGER = "contentforge.images.diffusers_backend"
WORDS = (
    "a",
    "smiling",
    "woman",
    "with",
    "freckles",
    "in",
    "a",
    "green",
    "sweater",
    "by",
    "a",
    "rainy",
    "cafe",
)


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def request(
    seed: int = 3, prompt: str = "a portrait photo of a woman in a cafe", **extra: Any
) -> ImageRequest:
    fields: dict[str, Any] = {"steps": 3, "guidance_scale": 3.5, "width": 128, "height": 128} | extra
    return ImageRequest(prompt=prompt, seed=seed, **fields)


def pixels(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def long_prompt(min_tokens: int, tokenizer: Any) -> str:
    """A prompt of at least ``min_tokens`` T5 tokens (``</s>`` included)."""
    words: list[str] = []
    while len(tokenizer(" ".join(words)).input_ids) < min_tokens:
        words.append(WORDS[len(words) % len(WORDS)])
    return " ".join(words)


@pytest.fixture(scope="module")
def flux_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from contentforge.images.tiny import build_tiny_flux_pipeline

    folder = tmp_path_factory.mktemp("models") / "flux"
    build_tiny_flux_pipeline(0).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def backend(flux_folder: Path) -> Iterator[Any]:
    from contentforge.images.diffusers_backend import DiffusersBackend

    built = DiffusersBackend.from_settings(
        settings(
            image_profile="model",
            image_model=str(flux_folder),
            image_device="cpu",
            image_replicas=2,
            image_micro_batch=4,
        )
    )
    yield built
    pools.clear(built.pool_key)


def loaded_pool(backend: Any) -> Any:
    return pools.get_pool(backend.pool_key, lambda: pytest.fail("not loaded"))


def test_tiny_t5_tokenizer_is_t5_shaped_and_survives_a_folder(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from contentforge.images.tiny import T5_MAX_TOKENS, build_tiny_t5_tokenizer

    tokenizer = build_tiny_t5_tokenizer()
    ids = tokenizer("A portrait photo, 35mm").input_ids
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "A portrait photo, 35mm"
    assert tokenizer.convert_ids_to_tokens(ids)[0].startswith("\u2581")  # SentencePiece word start
    # Letter pairs make words cost about half their length, so prompts really grow in tokens.
    assert len(ids) < len("A portrait photo, 35mm")
    padded = tokenizer("cafe", padding="max_length", max_length=8, truncation=True).input_ids
    assert len(padded) == 8 and padded[-1] == tokenizer.pad_token_id

    tokenizer.save_pretrained(tmp_path / "t5")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "t5")
    assert reloaded("A portrait photo, 35mm").input_ids == ids
    assert reloaded.model_max_length == T5_MAX_TOKENS and len(reloaded) == len(tokenizer)


def test_a_saved_flux_folder_is_detected_as_flux(flux_folder: Path) -> None:
    assert detect_family(str(flux_folder), "auto") == ("flux", "model_index.json names FluxPipeline")


@pytest.mark.slow
def test_flux_generates_through_the_backend_reproducibly_without_compel(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compel
    from diffusers import FluxPipeline

    from contentforge.images.diffusers_backend import DiffusersBackend

    def no_compel(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("compel must not be used for Flux")

    monkeypatch.setattr(compel, "CompelForSD", no_compel)
    monkeypatch.setattr(compel, "CompelForSDXL", no_compel)
    assert (backend.family, backend.name) == ("flux", "diffusers-flux")
    assert "FluxPipeline" in backend.describe()

    first = backend.generate(request(seed=7))
    pool = loaded_pool(backend)
    assert isinstance(pool.base, FluxPipeline)
    replicas = [pool._free.get() for _ in range(pool.size)]
    for replica in replicas:
        pool._free.put(replica)
    assert len(replicas) == 2 and all(r.compel is None for r in replicas)

    assert first.image.size == (128, 128) and pixels(first.image).std() > 5
    record = first.record
    assert (record.backend, record.scheduler) == ("diffusers-flux", "FlowMatchEulerDiscreteScheduler")
    assert (record.extra["family"], record.extra["micro_batch"]) == ("flux", "1")
    assert np.array_equal(pixels(backend.generate(request(seed=7)).image), pixels(first.image))
    assert not np.array_equal(pixels(backend.generate(request(seed=8)).image), pixels(first.image))
    # Guidance reaches Flux-dev's guidance embedding.
    other_guidance = backend.generate(request(seed=7, guidance_scale=7.0))
    assert not np.array_equal(pixels(other_guidance.image), pixels(first.image))

    # The folder-loaded pipeline is the in-code one: the tiny "flux" profile gives the same image.
    in_code = DiffusersBackend.from_settings(
        settings(image_profile="tiny", image_family="flux", image_device="cpu")
    )
    try:
        assert in_code.family == "flux"
        diff = np.abs(pixels(in_code.generate(request(seed=7)).image) - pixels(first.image))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    finally:
        pools.clear(in_code.pool_key)


@pytest.mark.slow
def test_each_image_of_a_flux_micro_batch_equals_its_single_run(backend: Any) -> None:
    from contentforge.images.diffusers_backend import to_pil

    backend.warm_up()
    tokenizer = loaded_pool(backend).base.tokenizer_2
    requests = [
        request(21),
        request(22, prompt="a red bicycle leaning on a wall"),
        request(23, prompt=long_prompt(40, tokenizer)),
        request(24),
    ]
    batched = backend.generate_arrays(requests)
    singles = [backend.generate_arrays([r])[0] for r in requests]
    for seed, one, alone in zip(range(21, 25), batched, singles, strict=True):
        assert one.shape == (128, 128, 3)
        # Compared as users get them: the stored 8-bit images. Batched kernels sum in another order,
        # so the floats may differ in the last bits, and a value that close to a rounding boundary
        # (x.5 of 255) can land one level apart; anything more is a real difference.
        diff = np.abs(pixels(to_pil(one)) - pixels(to_pil(alone)))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"seed {seed} differs in a micro-batch"
    assert np.abs(batched[0] - batched[3]).mean() > 1e-3  # one generator per image, not a shared one

    images = backend.generate_many(requests)
    assert [g.record.seed for g in images] == [21, 22, 23, 24]
    assert {g.record.extra["micro_batch"] for g in images} == {"4"}


@pytest.mark.slow
def test_long_flux_prompts_are_truncated_to_the_t5_limit_with_a_warning(
    backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from contentforge.images.diffusers_backend import flux_max_sequence
    from contentforge.images.tiny import T5_MAX_TOKENS

    backend.warm_up()
    pipe = loaded_pool(backend).base
    assert flux_max_sequence(pipe) == T5_MAX_TOKENS  # the tiny tokenizer's limit (real Flux: 512)
    tokenizer = pipe.tokenizer_2
    fits = long_prompt(T5_MAX_TOKENS - 10, tokenizer)
    too_long = long_prompt(T5_MAX_TOKENS + 20, tokenizer)
    assert len(tokenizer(fits).input_ids) <= T5_MAX_TOKENS < len(tokenizer(too_long).input_ids)

    with caplog.at_level(logging.WARNING, logger=BACKEND_LOGGER):
        backend.generate(request(31, prompt=fits))
    assert not [r for r in caplog.records if r.name == BACKEND_LOGGER]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=BACKEND_LOGGER):
        truncated = backend.generate(request(31, prompt=too_long + " in neon pink"))
    warnings = [r.getMessage() for r in caplog.records if r.name == BACKEND_LOGGER]
    assert len(warnings) == 1
    assert "seed 31" in warnings[0] and f"truncated to the model's limit of {T5_MAX_TOKENS}" in warnings[0]
    # What lies past the limit really is cut off: a different ending gives the same image.
    other_ending = backend.generate(request(31, prompt=too_long + " in deep blue"))
    assert np.array_equal(pixels(truncated.image), pixels(other_ending.image))
    # ...while a change within the limit changes it.
    changed = backend.generate(request(31, prompt="indoor " + too_long + " in neon pink"))
    assert not np.array_equal(pixels(truncated.image), pixels(changed.image))


@pytest.mark.slow
def test_flux_has_no_negative_prompt_and_the_record_says_so(backend: Any) -> None:
    plain = backend.generate(request(41))
    with_negative = backend.generate(request(41, negative_prompt="blurry, low quality"))
    assert np.array_equal(pixels(plain.image), pixels(with_negative.image))
    assert with_negative.record.negative_prompt == "blurry, low quality"
    assert with_negative.record.extra["negative_prompt_used"] == "false"
    assert "negative_prompt_used" not in plain.record.extra


@pytest.mark.slow
def test_a_flux_lora_changes_the_image_and_unloading_restores_it(backend: Any, tmp_path: Path) -> None:
    from contentforge.images.tiny import build_tiny_flux_lora, build_tiny_flux_pipeline

    lora = build_tiny_flux_lora(build_tiny_flux_pipeline(0), tmp_path / "anna_flux.safetensors", seed=1)
    spec = LoraSpec(source=str(lora), scale=1.0)
    base = pixels(backend.generate(request(51)).image)
    styled = backend.generate(request(51, loras=(spec,)))
    assert np.abs(pixels(styled.image) - base).mean() > 0.5
    assert [ref.source for ref in styled.record.loras] == [str(lora)]
    assert backend.unload_lora(spec) is True
    assert np.array_equal(pixels(backend.generate(request(51)).image), base)


@pytest.mark.slow
def test_a_fused_flux_lora_matches_the_unfused_one(backend: Any, flux_folder: Path, tmp_path: Path) -> None:
    from peft.tuners.lora import LoraLayer

    from contentforge.images.diffusers_backend import DiffusersBackend
    from contentforge.images.tiny import build_tiny_flux_lora, build_tiny_flux_pipeline

    lora = build_tiny_flux_lora(build_tiny_flux_pipeline(0), tmp_path / "ben_flux.safetensors", seed=2)
    styled = request(61, loras=(LoraSpec(source=str(lora), scale=0.9),))
    reference = backend.generate_arrays([styled])[0]
    fused = DiffusersBackend.from_settings(
        settings(
            image_profile="model", image_model=str(flux_folder), image_device="cpu", image_lora_fuse=True
        )
    )
    assert fused.pool_key == backend.pool_key  # same weights: the fused set is switched in and out
    assert np.abs(fused.generate_arrays([styled])[0] - reference).max() < 1e-4
    transformer = loaded_pool(backend).base.transformer
    assert any(isinstance(m, LoraLayer) and m.merged_adapters for m in transformer.modules())
    assert fused.generate(styled).record.extra["lora_fused"] == "true"
    assert np.abs(backend.generate_arrays([styled])[0] - reference).max() < 1e-4
    assert fused.unload_lora(styled.loras[0]) is True
