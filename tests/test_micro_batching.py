"""True micro-batching: item i of a batch equals a single run with its seed; grouping; failure isolation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contentforge.config import Settings
from contentforge.errors import GenerationFailed, InvalidInput
from contentforge.images import pool as pools
from contentforge.images.batching import generate_requests, group_requests, image_group_size
from contentforge.images.fixed_latency import FixedLatencyBackend
from contentforge.images.protocol import GeneratedImage, ImageRequest

LONG = " ".join(["a smiling woman with freckles in a green sweater by a rainy cafe window"] * 6)


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def request(seed: int, prompt: str = "a cup of coffee on a table", **extra: Any) -> ImageRequest:
    fields: dict[str, Any] = {"steps": 3, "guidance_scale": 5.0, "width": 128, "height": 128} | extra
    return ImageRequest(prompt=prompt, seed=seed, **fields)


@pytest.fixture(scope="module", params=["sdxl", "sd15"])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    from contentforge.images.diffusers_backend import DiffusersBackend

    built = DiffusersBackend.from_settings(
        settings(image_profile="tiny", image_family=request.param, image_device="cpu", image_micro_batch=4)
    )
    yield built
    pools.clear(built.pool_key)


@pytest.mark.slow
def test_each_image_of_a_micro_batch_equals_its_single_run(backend: Any) -> None:
    from contentforge.images.diffusers_backend import to_pil

    requests = [
        request(11),
        request(12, negative_prompt="blurry, low quality"),
        request(13, prompt="a red bicycle leaning on a wall"),
        request(14, prompt=LONG, negative_prompt="blurry"),  # more 77-token chunks: its own call
        request(15),
    ]
    batched = backend.generate_arrays(requests)
    singles = [backend.generate_arrays([r])[0] for r in requests]
    for seed, (one, alone) in zip(range(11, 16), zip(batched, singles, strict=True), strict=True):
        assert one.shape == (128, 128, 3)
        # Compared as users get them: the stored 8-bit images. Batched kernels sum in another order,
        # so the floats may differ in the last bits, and a value that close to a rounding boundary
        # (x.5 of 255) can land one level apart; anything more is a real difference.
        stored, stored_alone = (np.asarray(to_pil(a), np.int16) for a in (one, alone))
        diff = np.abs(stored - stored_alone)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"seed {seed} differs in a micro-batch"
    # ...and the images really differ from one another (the generators are per image, not shared).
    assert np.abs(batched[0] - batched[4]).mean() > 1e-3
    assert np.abs(batched[0] - batched[1]).mean() > 1e-3

    images = backend.generate_many(requests)
    assert [g.record.seed for g in images] == [11, 12, 13, 14, 15]
    assert {g.record.extra["micro_batch"] for g in images} == {"5"}
    single = backend.generate(requests[2])
    assert single.record.extra["micro_batch"] == "1"
    diff = np.abs(np.asarray(images[2].image, np.int16) - np.asarray(single.image, np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001


@pytest.mark.slow
def test_generate_many_refuses_mixed_settings(backend: Any) -> None:
    with pytest.raises(InvalidInput, match="must share LoRA set, size, steps and guidance"):
        backend.generate_many([request(1), request(2, steps=4)])
    assert backend.generate_many([]) == []


def test_grouping_by_shared_settings_and_size() -> None:
    requests = [
        request(0),
        request(1, width=192),
        request(2),
        request(3),
        request(4, guidance_scale=7.0),
        request(5),
        request(6, width=192),
    ]
    assert group_requests(requests, 2) == [[0, 2], [3, 5], [1, 6], [4]]
    assert group_requests(requests, 1) == [[i] for i in (0, 2, 3, 5, 1, 6, 4)]
    assert image_group_size(FixedLatencyBackend(0.0)) == 1


class FlakyBackend:
    """Fails a whole micro-batch, and singly only for the seed it cannot do."""

    name = "flaky"
    micro_batch = 4

    def __init__(self, bad_seed: int) -> None:
        self.bad_seed = bad_seed
        self.inner = FixedLatencyBackend(0.0)
        self.calls: list[str] = []

    def describe(self) -> str:
        return "flaky"

    def generate(self, request: ImageRequest) -> GeneratedImage:
        self.calls.append(f"single {request.seed}")
        if request.seed == self.bad_seed:
            raise GenerationFailed(f"seed {request.seed} broke")
        return self.inner.generate(request)

    def generate_many(self, requests: list[ImageRequest]) -> list[GeneratedImage]:
        self.calls.append(f"batch {len(requests)}")
        if any(r.seed == self.bad_seed for r in requests):
            raise GenerationFailed("out of memory in the micro-batch")
        return [self.inner.generate(r) for r in requests]


def test_a_failing_micro_batch_is_retried_piece_by_piece() -> None:
    backend = FlakyBackend(bad_seed=2)
    results = generate_requests(backend, [request(1), request(2), request(3)])
    assert backend.calls == ["batch 3", "single 1", "single 2", "single 3"]
    assert isinstance(results[1], GenerationFailed) and "seed 2 broke" in str(results[1])
    assert [r.record.seed for r in (results[0], results[2])] == [1, 3]  # type: ignore[union-attr]

    good = FlakyBackend(bad_seed=99)
    assert [r.record.seed for r in generate_requests(good, [request(1), request(2)])] == [1, 2]  # type: ignore[union-attr]
    assert good.calls == ["batch 2"]


@pytest.mark.slow
def test_batch_flow_with_micro_batches(
    settings_env: Path, prefect_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real batch flow with micro-batches of 3: every piece generated, pieces of one micro-batch share
    its window, and every image still equals its single run."""
    from contentforge.config import get_settings
    from contentforge.domain import PieceStatus
    from contentforge.images.factory import reset_image_backends
    from contentforge.personas import sample_persona
    from flows.produce_content_batch import produce_content_batch
    from tasks import resources
    from tasks.bootstrap import ensure_concurrency_limit

    monkeypatch.setenv("CONTENTFORGE_IMAGE_MICRO_BATCH", "3")
    get_settings.cache_clear()
    reset_image_backends()
    config = get_settings()
    ensure_concurrency_limit(config.concurrency_limit_name, config.generation_slots)
    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    try:
        stats = produce_content_batch(persona="mia-fit", num_pieces=5, platform="instagram", seed=4)
        rows = repo.pieces(batch_id=stats["batch_id"])
        assert len(rows) == 5 and all(r.status is not PieceStatus.failed for r in rows)
        sizes = sorted(int(r.record.extra["micro_batch"]) for r in rows)
        assert sum(sizes) >= 5 and max(sizes) >= 2
        windows = {(r.started_at, r.finished_at) for r in rows}
        assert len(windows) < 5  # pieces of one micro-batch share its window
        backend = resources.image_backend()
        row = max(rows, key=lambda r: int(r.record.extra["micro_batch"]))
        from contentforge.batch import image_request_for

        stored = np.asarray(_image(settings_env / row.storage_key), np.int16)
        alone = np.asarray(backend.generate(image_request_for(row, sample_persona(), config)).image, np.int16)
        assert np.abs(stored - alone).max() <= 1
    finally:
        reset_image_backends()
        get_settings.cache_clear()


def _image(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")
