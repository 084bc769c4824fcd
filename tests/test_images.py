"""The image engine: determinism, LoRA, long prompts, thread safety, provenance and file safety.

Slow tests share one tiny random-weight SDXL pipeline per module (built in code, ~0.1 s per image).
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from contentforge.config import Settings
from contentforge.domain import GenerationRecord, LoraRef, LoraSpec
from contentforge.errors import InvalidInput, InvalidLora, UnsafeCheckpoint
from contentforge.images import pool as pools
from contentforge.images.factory import build_image_backend, reset_image_backends
from contentforge.images.fixed_latency import FIXED_LATENCY_NAME, FixedLatencyBackend
from contentforge.images.protocol import ImageBackend, ImageRequest
from contentforge.images.provenance import (
    DIGITAL_SOURCE_TYPE,
    XMP_KEY,
    png_with_provenance,
    read_provenance,
)
from contentforge.images.safety import check_model_file, validate_lora

if TYPE_CHECKING:
    from contentforge.images.diffusers_backend import DiffusersBackend

PROMPT = "portrait photo of TOK_anna drinking coffee in a sunny cafe"
LONG_TEXT = (
    "cinematic portrait of a smiling woman with freckles and long wavy auburn hair wearing a green wool "
    "sweater sitting by a rainy window in a cozy wooden cafe holding a ceramic cup soft morning light "
    "shallow depth of field film grain warm tones bokeh lights in the background gentle expression "
    "looking at the camera detailed skin texture natural makeup silver earrings a small notebook on the "
    "table steam rising from the coffee plants on the shelf vintage posters on the wall"
)


def request(
    seed: int = 1, prompt: str = PROMPT, loras: tuple[LoraSpec, ...] = (), **extra: object
) -> ImageRequest:
    fields: dict[str, object] = {"steps": 4, "guidance_scale": 5.0, "width": 128, "height": 128} | extra
    return ImageRequest(prompt=prompt, seed=seed, loras=loras, **fields)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def sample_record() -> GenerationRecord:
    return GenerationRecord(
        backend="tiny-sdxl",
        model="tiny-sdxl-random:seed=0",
        prompt='ünïcode prompt with <xml> & "quotes"',
        negative_prompt="blurry",
        seed=2**40 + 7,
        steps=4,
        guidance_scale=5.0,
        width=128,
        height=192,
        scheduler="EulerDiscreteScheduler",
        loras=(LoraRef(source="/loras/anna.safetensors", scale=0.8, sha256="ab" * 32),),
        extra={"device": "cpu"},
    )


# -- request validation -------------------------------------------------------------------------


def test_request_rejects_sizes_the_vae_cannot_produce() -> None:
    with pytest.raises(ValidationError, match="multiple of 8"):
        request(width=130)
    with pytest.raises(ValidationError):
        request(seed=-1)


# -- provenance ---------------------------------------------------------------------------------


def test_provenance_round_trip_and_xmp_chunk() -> None:
    record = sample_record()
    image = Image.new("RGB", (32, 24), (10, 20, 30))
    data = png_with_provenance(image, record)

    provenance = read_provenance(data)
    assert provenance.digital_source_type == DIGITAL_SOURCE_TYPE
    assert provenance.record == record
    assert provenance.record is not None and provenance.record.fingerprint() == record.fingerprint()

    with Image.open(io.BytesIO(data)) as reopened:
        assert reopened.size == (32, 24)
        xmp = reopened.info[XMP_KEY]
        assert reopened.getpixel((0, 0)) == (10, 20, 30)
    # The XMP itself (not just our chunk) carries the IPTC label, as standard readers expect.
    root = ET.fromstring(xmp[xmp.index("<x:xmpmeta") : xmp.rindex("</x:xmpmeta>") + len("</x:xmpmeta>")])
    ns = "{http://iptc.org/std/Iptc4xmpExt/2008-02-29/}DigitalSourceType"
    assert [el.text for el in root.iter(ns)] == [DIGITAL_SOURCE_TYPE]


def test_provenance_falls_back_to_the_record_inside_xmp(tmp_path: Path) -> None:
    record = sample_record()
    with Image.open(io.BytesIO(png_with_provenance(Image.new("RGB", (8, 8)), record))) as image:
        xmp = image.info[XMP_KEY]
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_itxt(XMP_KEY, xmp)  # only the XMP survives, as after some editors strip unknown chunks
        path = tmp_path / "stripped.png"
        image.save(path, pnginfo=info)
    provenance = read_provenance(path)
    assert provenance.digital_source_type == DIGITAL_SOURCE_TYPE
    assert provenance.record == record


def test_provenance_of_an_unlabelled_png_is_empty() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    provenance = read_provenance(buffer.getvalue())
    assert provenance.digital_source_type is None
    assert provenance.record is None


# -- file safety --------------------------------------------------------------------------------


def test_check_model_file_refuses_pickles_unless_allowed(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"not really a pickle")
    with pytest.raises(UnsafeCheckpoint, match="CONTENTFORGE_ALLOW_PICKLE=1"):
        check_model_file(checkpoint, allow_pickle=False)
    with pytest.raises(UnsafeCheckpoint):
        check_model_file(tmp_path / "weights.BIN", allow_pickle=False)
    check_model_file(checkpoint, allow_pickle=True)
    check_model_file(tmp_path / "model.safetensors", allow_pickle=False)


def test_validate_lora_reports_each_problem_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(InvalidLora, match="does not exist") as exc:
        validate_lora(LoraSpec(source=str(missing)))
    assert str(missing) in str(exc.value) and "\n" not in str(exc.value)

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InvalidLora, match=r"not a \.safetensors file"):
        validate_lora(LoraSpec(source=str(text)))

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\xff" * 64)
    with pytest.raises(InvalidLora, match="not a valid safetensors file") as exc:
        validate_lora(LoraSpec(source=str(corrupt)))
    assert "\n" not in str(exc.value)

    pickle = tmp_path / "lora.bin"
    pickle.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(InvalidLora, match="CONTENTFORGE_ALLOW_PICKLE=1"):
        validate_lora(LoraSpec(source=str(pickle)))
    assert (
        validate_lora(LoraSpec(source=str(pickle)), allow_pickle=True)
        == hashlib.sha256(pickle.read_bytes()).hexdigest()
    )


def test_validate_lora_hashes_a_good_file_and_skips_hub_ids(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    good = tmp_path / "anna.safetensors"
    save_file({"unet.lora_A.weight": np.ones((4, 4), dtype=np.float32)}, str(good))
    expected = hashlib.sha256(good.read_bytes()).hexdigest()
    assert validate_lora(LoraSpec(source=str(good))) == expected
    # A folder plus weight name resolves to the same file.
    assert validate_lora(LoraSpec(source=str(tmp_path), weight_name="anna.safetensors")) == expected
    # Editing the file changes the hash (the cache is keyed by size and mtime).
    save_file({"unet.lora_A.weight": np.zeros((4, 5), dtype=np.float32)}, str(good))
    edited = hashlib.sha256(good.read_bytes()).hexdigest()
    assert edited != expected
    assert validate_lora(LoraSpec(source=str(good))) == edited
    assert validate_lora(LoraSpec(source="someone/anna-lora", weight_name="anna.safetensors")) is None


# -- fixed-latency benchmark backend ------------------------------------------------------------


def test_fixed_latency_backend_sleeps_and_is_deterministic() -> None:
    backend = FixedLatencyBackend(latency_s=0.2, cost_usd=0.01)
    assert isinstance(backend, ImageBackend)
    assert "benchmark" in backend.name and "orchestration" in backend.describe()

    first = backend.generate(request(seed=5, width=96, height=64))
    assert first.seconds >= 0.2
    assert first.image.size == (96, 64)
    assert first.cost_usd == 0.01
    assert first.record.backend == FIXED_LATENCY_NAME
    assert (first.record.seed, first.record.width, first.record.height) == (5, 96, 64)

    again = backend.generate(request(seed=5, width=96, height=64))
    other = backend.generate(request(seed=6, width=96, height=64))
    assert np.array_equal(pixels(first.image), pixels(again.image))
    assert not np.array_equal(pixels(first.image), pixels(other.image))
    assert pixels(first.image).std() > 5  # an actual picture, not a flat fill


def test_fixed_latency_backend_runs_concurrently() -> None:
    backend = FixedLatencyBackend(latency_s=1.0)
    started = time.perf_counter()
    with ThreadPoolExecutor(5) as executor:
        results = list(executor.map(lambda seed: backend.generate(request(seed=seed)), range(5)))
    elapsed = time.perf_counter() - started
    assert all(r.seconds >= 1.0 for r in results)
    # Serialised calls would need >= 5 s; the wide margin keeps a loaded machine from failing it.
    assert elapsed < 4.0, f"5 concurrent 1 s images took {elapsed:.2f}s: the backend serialises calls"


# -- factory ------------------------------------------------------------------------------------


def test_factory_caches_per_relevant_settings(tmp_path: Path) -> None:
    reset_image_backends()
    a = build_image_backend(settings(image_profile="fixed-latency", fixed_latency_s=0.0))
    b = build_image_backend(settings(image_profile="fixed-latency", fixed_latency_s=0.0, data_dir=tmp_path))
    c = build_image_backend(settings(image_profile="fixed-latency", fixed_latency_s=0.5))
    assert a is b
    assert a is not c
    assert isinstance(c, FixedLatencyBackend) and c.latency_s == 0.5


def test_factory_rejects_bad_model_settings(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="CONTENTFORGE_IMAGE_MODEL must be set"):
        build_image_backend(settings(image_profile="model"))
    with pytest.raises(InvalidInput, match="no such file"):
        build_image_backend(settings(image_profile="model", image_model=str(tmp_path / "absent.safetensors")))
    checkpoint = tmp_path / "sdxl.ckpt"
    checkpoint.write_bytes(b"x")
    with pytest.raises(UnsafeCheckpoint):
        build_image_backend(settings(image_profile="model", image_model=str(checkpoint)))


# -- pool and adapter gate (no model needed) ----------------------------------------------------


def test_pool_loads_once_under_concurrency_and_clear_evicts() -> None:
    key = pools.PoolKey(model="fake", dtype="float32", device="cpu")
    loads: list[int] = []

    def load() -> tuple[object, list[str]]:
        time.sleep(0.05)
        loads.append(1)
        return object(), ["r0", "r1"]

    try:
        with ThreadPoolExecutor(8) as executor:
            got = list(executor.map(lambda _: pools.get_pool(key, load), range(8)))
        assert len(loads) == 1
        assert all(p is got[0] for p in got)
        assert key in pools.loaded_keys()
    finally:
        pools.clear(key)
    assert key not in pools.loaded_keys()
    assert got[0].base is None
    pools.get_pool(key, load)
    assert len(loads) == 2
    pools.clear(key)


def test_adapter_gate_never_mixes_adapter_sets() -> None:
    gate = pools.AdapterGate()
    lock = threading.Lock()
    running: dict[str, int] = {}
    switches: list[str] = []
    violations: list[str] = []

    def switch(key: str) -> None:
        with lock:
            if any(running.values()):
                violations.append(f"switched to {key} while {running} ran")
            switches.append(key)

    def work(i: int) -> None:
        key = "lora" if i % 3 == 0 else "base"
        with gate.hold(key, lambda: switch(key)):
            with lock:
                running[key] = running.get(key, 0) + 1
                if any(n for k, n in running.items() if k != key):
                    violations.append(f"{key} ran alongside {running}")
            time.sleep(0.005)
            with lock:
                running[key] -= 1

    with ThreadPoolExecutor(6) as executor:
        list(executor.map(work, range(60)))
    assert not violations
    assert switches and len(switches) < 60  # same-set work was batched, not switched per call


def test_adapter_gate_retries_after_a_failed_switch() -> None:
    gate = pools.AdapterGate()
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("adapter does not fit")

    with pytest.raises(RuntimeError), gate.hold("a", broken):
        pass
    with gate.hold("a", lambda: calls.append("a")):
        pass
    with gate.hold("a", lambda: calls.append("again")):
        pass
    assert calls == ["broken", "a"]


# -- the tiny SDXL pipeline through the diffusers backend (slow) --------------------------------


@pytest.fixture(scope="module")
def tiny_backend() -> Iterator[DiffusersBackend]:
    from contentforge.images.diffusers_backend import DiffusersBackend

    backend = DiffusersBackend.from_settings(
        settings(image_profile="tiny", image_device="cpu", image_replicas=5, image_cost_usd=0.002)
    )
    backend.warm_up()
    yield backend
    pools.clear(backend.pool_key)


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from contentforge.images.tiny import build_tiny_lora, build_tiny_sdxl_pipeline

    folder = tmp_path_factory.mktemp("loras")
    pipe = build_tiny_sdxl_pipeline(0)
    return build_tiny_lora(pipe, folder / "anna.safetensors", seed=1), build_tiny_lora(
        pipe, folder / "ben.safetensors", seed=2
    )


@pytest.mark.slow
def test_same_seed_reproduces_pixels_and_record(tiny_backend: ImageBackend) -> None:
    first = tiny_backend.generate(request(seed=7, width=192, height=128))
    again = tiny_backend.generate(request(seed=7, width=192, height=128))
    assert first.image.size == (192, 128)
    assert np.array_equal(pixels(first.image), pixels(again.image))
    assert pixels(first.image).std() > 5
    record = first.record
    assert record == again.record
    assert (record.backend, record.model, record.scheduler) == (
        "tiny-sdxl",
        "tiny-sdxl-random:seed=0",
        "EulerDiscreteScheduler",
    )
    assert (record.prompt, record.seed, record.steps, record.width, record.height) == (PROMPT, 7, 4, 192, 128)
    assert record.guidance_scale == 5.0 and record.loras == ()
    assert first.cost_usd == 0.002 and first.seconds > 0
    assert "cpu" in tiny_backend.describe() and "tiny" in tiny_backend.describe()


@pytest.mark.slow
def test_different_seeds_prompts_and_negatives_differ(tiny_backend: ImageBackend) -> None:
    base = pixels(tiny_backend.generate(request(seed=1)).image)
    assert not np.array_equal(base, pixels(tiny_backend.generate(request(seed=2)).image))
    bicycle = tiny_backend.generate(request(seed=1, prompt="a red bicycle"))
    assert not np.array_equal(base, pixels(bicycle.image))
    negative = tiny_backend.generate(request(seed=1, negative_prompt="blurry, low quality"))
    assert not np.array_equal(base, pixels(negative.image))
    assert negative.record.negative_prompt == "blurry, low quality"


@pytest.mark.slow
def test_lora_changes_the_image_and_switching_back_restores_the_base(
    tiny_backend: ImageBackend, lora_files: tuple[Path, Path]
) -> None:
    anna, ben = lora_files
    with_anna = (LoraSpec(source=str(anna), scale=1.0),)
    base = pixels(tiny_backend.generate(request()).image)

    lora_result = tiny_backend.generate(request(loras=with_anna))
    lora = pixels(lora_result.image)
    assert np.abs(lora - base).mean() > 0.5
    assert lora_result.record.loras == (
        LoraRef(source=str(anna), scale=1.0, sha256=hashlib.sha256(anna.read_bytes()).hexdigest()),
    )

    assert np.array_equal(pixels(tiny_backend.generate(request()).image), base)
    zero = (LoraSpec(source=str(anna), scale=0.0),)
    assert np.array_equal(pixels(tiny_backend.generate(request(loras=zero)).image), base)
    assert np.array_equal(pixels(tiny_backend.generate(request(loras=with_anna)).image), lora)

    half = pixels(tiny_backend.generate(request(loras=(LoraSpec(source=str(anna), scale=0.5),))).image)
    other = pixels(tiny_backend.generate(request(loras=(LoraSpec(source=str(ben), scale=1.0),))).image)
    assert not np.array_equal(half, lora) and not np.array_equal(half, base)
    assert not np.array_equal(other, lora) and not np.array_equal(other, base)


@pytest.mark.slow
def test_broken_lora_fails_before_generation(tiny_backend: ImageBackend, tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.safetensors"
    corrupt.write_bytes(b"{}garbage")
    with pytest.raises(InvalidLora, match=r"broken\.safetensors"):
        tiny_backend.generate(request(loras=(LoraSpec(source=str(corrupt)),)))
    # The backend still works afterwards.
    assert tiny_backend.generate(request()).image.size == (128, 128)


@pytest.mark.slow
def test_long_prompt_is_not_truncated(tiny_backend: ImageBackend) -> None:
    from compel import CompelForSDXL

    from contentforge.images.tiny import build_tiny_sdxl_pipeline, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()

    def n_tokens(words: list[str]) -> int:
        return len(tokenizer(" ".join(words)).input_ids)

    all_words = LONG_TEXT.split()
    words = next(all_words[:n] for n in range(len(all_words)) if n_tokens(all_words[:n]) >= 150)
    long_prompt = " ".join(words)
    assert 150 <= n_tokens(words) <= 160
    # The longest leading part of the prompt that fits CLIP's 77 tokens on its own.
    short_prompt = next(" ".join(words[:n]) for n in range(len(words), 0, -1) if n_tokens(words[:n]) <= 77)

    embeds = CompelForSDXL(build_tiny_sdxl_pipeline(0))(long_prompt).embeds
    assert embeds.shape[1] >= 2 * 77  # both chunks encoded, none dropped

    long_image = tiny_backend.generate(request(prompt=long_prompt, negative_prompt="blurry")).image
    short_image = tiny_backend.generate(request(prompt=short_prompt, negative_prompt="blurry")).image
    assert not np.array_equal(pixels(long_image), pixels(short_image))


def _sequential_then_concurrent(
    backend: ImageBackend, requests: list[ImageRequest]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    sequential = [pixels(backend.generate(r).image) for r in requests]
    with ThreadPoolExecutor(5) as executor:
        concurrent = [pixels(g.image) for g in executor.map(backend.generate, requests)]
    return sequential, concurrent


@pytest.mark.slow
def test_concurrent_generation_matches_sequential(
    tiny_backend: DiffusersBackend, lora_files: tuple[Path, Path]
) -> None:
    """Five threads really run together on the shared weights and each image equals its sequential twin."""
    anna, _ = lora_files
    tiny_backend.warm_up()
    gate = pools.get_pool(tiny_backend.pool_key, lambda: pytest.fail("pool was not loaded")).gate
    for loras in [(), (LoraSpec(source=str(anna), scale=1.0),)]:
        requests = [request(seed=seed, loras=loras) for seed in range(10)]
        gate.peak = 0
        sequential, concurrent = _sequential_then_concurrent(tiny_backend, requests)
        assert gate.peak > 1, "generations never overlapped, so concurrency was not tested"
        for seed, (one, other) in enumerate(zip(sequential, concurrent, strict=True)):
            assert np.array_equal(one, other), f"seed {seed} (loras={loras}) differs when run concurrently"
        assert not np.array_equal(sequential[0], sequential[1])


@pytest.mark.slow
def test_concurrent_mixed_adapter_sets_match_sequential(
    tiny_backend: ImageBackend, lora_files: tuple[Path, Path]
) -> None:
    """Interleaved adapter sets: the gate switches LoRAs only between, never during, generations."""
    anna, ben = lora_files
    choices: list[tuple[LoraSpec, ...]] = [
        (),
        (LoraSpec(source=str(anna), scale=1.0),),
        (LoraSpec(source=str(ben)),),
    ]
    requests = [request(seed=seed, loras=choices[(seed // 2) % 3]) for seed in range(12)]
    sequential, concurrent = _sequential_then_concurrent(tiny_backend, requests)
    for seed, (one, other) in enumerate(zip(sequential, concurrent, strict=True)):
        assert np.array_equal(one, other), f"seed {seed} differs when generated concurrently"


@pytest.mark.slow
def test_factory_builds_the_tiny_backend_once() -> None:
    reset_image_backends()
    try:
        first = build_image_backend(settings(image_profile="tiny", image_device="cpu"))
        second = build_image_backend(settings(image_profile="tiny", image_device="cpu"))
        assert first is second
        assert first.name == "tiny-sdxl"
    finally:
        reset_image_backends()


@pytest.mark.slow
def test_model_profile_loads_a_local_diffusers_folder(tiny_backend: ImageBackend, tmp_path: Path) -> None:
    """The "model" loader path (from_pretrained on a folder, safetensors only) gives the same picture."""
    from contentforge.images.diffusers_backend import DiffusersBackend
    from contentforge.images.tiny import build_tiny_sdxl_pipeline

    folder = tmp_path / "sdxl"
    build_tiny_sdxl_pipeline(0).save_pretrained(folder, safe_serialization=True)
    backend = DiffusersBackend.from_settings(
        settings(image_profile="model", image_model=str(folder), image_device="cpu", image_replicas=2)
    )
    try:
        result = backend.generate(request(seed=3))
        assert result.record.backend == "diffusers-sdxl" and result.record.model == str(folder)
        # Same weights through another loader: equal up to float rounding (at most 1 level, rarely).
        diff = np.abs(pixels(result.image) - pixels(tiny_backend.generate(request(seed=3)).image))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
        assert np.array_equal(pixels(result.image), pixels(backend.generate(request(seed=3)).image))
    finally:
        pools.clear(backend.pool_key)
