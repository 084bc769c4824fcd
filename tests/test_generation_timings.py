"""Each generation records load, denoise and decode time and cost; the batch summary shows the means."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from contentforge.config import Settings
from contentforge.db import BatchStats
from contentforge.domain.models import MEASURED_EXTRA_KEYS
from contentforge.images import pool as pools
from contentforge.images.fixed_latency import FixedLatencyBackend
from contentforge.images.protocol import ImageRequest
from contentforge.images.timings import COST_USD, DECODE_S, DENOISE_S, LOAD_S, TIMING_KEYS, mean_timings
from contentforge.summary import batch_summary_markdown


def request(seed: int, **extra: Any) -> ImageRequest:
    fields: dict[str, Any] = {"steps": 3, "guidance_scale": 5.0, "width": 64, "height": 64} | extra
    return ImageRequest(prompt="TOK_anna in a cafe", seed=seed, **fields)


def timings(extra: dict[str, str]) -> tuple[float, float, float]:
    return float(extra[LOAD_S]), float(extra[DENOISE_S]), float(extra[DECODE_S])


@pytest.fixture(scope="module")
def backend() -> Iterator[Any]:
    from contentforge.images.diffusers_backend import DiffusersBackend

    built = DiffusersBackend.from_settings(
        Settings(_env_file=None, image_profile="tiny", image_device="cpu", image_cost_usd=0.0025)  # type: ignore[call-arg]
    )
    pools.clear(built.pool_key)  # the first generation below must load the pipeline itself
    yield built
    pools.clear(built.pool_key)


@pytest.mark.slow
def test_diffusers_generation_records_load_denoise_decode_and_cost(backend: Any, tmp_path: Path) -> None:
    from contentforge.domain import LoraSpec
    from contentforge.images.tiny import build_tiny_lora, build_tiny_sdxl_pipeline

    cold = backend.generate(request(1))
    load, denoise, decode = timings(cold.timings)
    assert load > 0, "the first generation loaded the pipeline"
    assert denoise > 0 and decode > 0
    assert denoise + decode <= cold.seconds
    assert float(cold.timings[COST_USD]) == pytest.approx(0.0025)

    warm = backend.generate(request(1))
    load, denoise, decode = timings(warm.timings)
    assert load == 0 and denoise > 0 and decode >= 0
    # The step-end clock does not touch the pixels: the same request gives the same image and record...
    assert np.array_equal(np.asarray(cold.image), np.asarray(warm.image))
    assert cold.record == warm.record and not set(TIMING_KEYS) & set(cold.record.extra)
    # ...and the stored record carries the timings without changing the image's fingerprint.
    stored = cold.stored_record()
    assert timings(stored.extra) == timings(cold.timings) and stored.extra["micro_batch"] == "1"
    assert stored.fingerprint() == warm.stored_record().fingerprint() == cold.record.fingerprint()

    # A LoRA loaded for this call counts as load time; once loaded it no longer does.
    lora = build_tiny_lora(build_tiny_sdxl_pipeline(0), tmp_path / "anna.safetensors", 1)
    spec = LoraSpec(source=str(lora), scale=0.8)
    first = backend.generate(request(2, loras=(spec,)))
    again = backend.generate(request(2, loras=(spec,)))
    assert timings(first.timings)[0] > 0
    assert timings(again.timings)[0] == 0
    backend.unload_lora(spec)

    # A micro-batch: its images share the pipeline call's times equally.
    batch = backend.generate_many([request(3), request(4)])
    assert {timings(g.timings) for g in batch} == {timings(batch[0].timings)}
    assert timings(batch[0].timings)[1] > 0


def test_measured_keys_are_the_ones_left_out_of_fingerprints() -> None:
    remote_run = {"prediction_id", "predict_time_s"}  # Replicate: which prediction, how long it ran
    charge = {"generation_id"}  # which generation was paid for (its charge key), not what it made
    assert set(TIMING_KEYS) | {COST_USD} | remote_run | charge == MEASURED_EXTRA_KEYS


def test_fixed_latency_records_only_what_applies() -> None:
    result = FixedLatencyBackend(latency_s=0.01, cost_usd=0.5).generate(request(7))
    stored = result.stored_record().extra
    assert float(stored[LOAD_S]) == 0 and stored[COST_USD] == "0.5" and stored["benchmark"] == "true"
    assert DENOISE_S not in stored and DECODE_S not in stored


def _piece(index: int, extra: dict[str, str] | None) -> Any:
    record = None if extra is None else {"backend": "x", "extra": extra}
    return SimpleNamespace(id=f"b-{index:03d}", generation_record=record, error=None, verdict=None)


STATS = BatchStats(
    batch_id="b",
    status="completed",
    num_pieces=4,
    pieces=4,
    generated=3,
    hooks=0,
    by_status={"generated": 3, "failed": 1},
    by_verdict={},
    by_tier={},
    by_template_tier={},
    cost_usd_total=0.0,
    cost_usd_by_kind={},
    cost_usd_mean=0.0,
    generation_seconds_mean=None,
)


def test_summary_shows_mean_load_denoise_decode_per_batch() -> None:
    pieces = [
        _piece(0, {LOAD_S: "2.0", DENOISE_S: "1.0", DECODE_S: "0.25"}),
        _piece(1, {LOAD_S: "0", DENOISE_S: "3.0", DECODE_S: "0.75"}),
        _piece(2, {LOAD_S: "0.0", "cost_usd": "0.1"}),  # e.g. the fixed-latency backend: no split
        _piece(3, None),  # a failed piece has no record
    ]
    assert mean_timings(p.generation_record for p in pieces) == {
        LOAD_S: pytest.approx(2 / 3),
        DENOISE_S: pytest.approx(2.0),
        DECODE_S: pytest.approx(0.5),
    }
    text = batch_summary_markdown(STATS, pieces)
    assert "Mean time per generation: load 0.667 s, denoise 2.000 s, decode 0.500 s." in text.splitlines()

    # No timings recorded at all (e.g. only Replicate pieces): no line rather than zeros.
    assert "Mean time per generation" not in batch_summary_markdown(STATS, [_piece(0, {"cost_usd": "1"})])


@pytest.mark.slow
def test_summary_line_from_real_tiny_generations(backend: Any) -> None:
    images = [backend.generate(request(seed)) for seed in (5, 6)]
    pieces = [_piece(i, {}) for i in range(len(images))]
    for piece, image in zip(pieces, images, strict=True):
        piece.generation_record = image.stored_record().model_dump(mode="json")  # as PieceRow holds it
    means = mean_timings(p.generation_record for p in pieces)
    assert means[DENOISE_S] > 0 and means[DECODE_S] >= 0 and means[LOAD_S] >= 0
    line = next(
        x for x in batch_summary_markdown(STATS, pieces).splitlines() if x.startswith("Mean time per")
    )
    assert f"denoise {means[DENOISE_S]:.3f} s" in line


def test_stored_piece_and_its_file_carry_the_timings_and_the_summary_shows_them(tmp_path: Path) -> None:
    import uuid
    from datetime import UTC, datetime

    from PIL import Image

    from contentforge.batch import TimedImage, piece_id_for, store_piece
    from contentforge.db import PlannedPiece, Repository, make_engine, migrate
    from contentforge.domain import GenerationRecord
    from contentforge.images.protocol import GeneratedImage
    from contentforge.images.provenance import read_provenance
    from contentforge.images.timings import timing_extra
    from contentforge.personas import sample_persona
    from contentforge.storage import LocalStorage

    url = f"sqlite:///{tmp_path / 'cf.db'}"
    migrate(url)
    repo = Repository(make_engine(url))
    persona = sample_persona()
    repo.upsert_persona(persona)
    batch_id = uuid.uuid4().hex
    repo.create_batch(
        batch_id=batch_id, persona_id=persona.id, platform="instagram", num_pieces=2,
        tier_mix={"safe": 1.0}, seed=1, params={}, flow_run_id=None,
    )  # fmt: skip
    ids = [piece_id_for(batch_id, i) for i in range(2)]
    repo.add_planned_pieces(
        batch_id, [PlannedPiece(pid, i, "FIT-001", "safe", "p", "n", 7 + i) for i, pid in enumerate(ids)]
    )
    storage, now = LocalStorage(tmp_path / "data"), datetime.now(UTC)
    for i, (pid, load, denoise) in enumerate(zip(ids, (1.5, 0.0), (0.25, 0.75), strict=True)):
        record = GenerationRecord(
            backend="b", model="m", prompt="p", seed=7 + i, steps=2, guidance_scale=1.0, width=32, height=32
        )
        extra = timing_extra(load_s=load, denoise_s=denoise, decode_s=0.125, cost_usd=0.01)
        generated = GeneratedImage(Image.new("RGB", (32, 32), "teal"), record, 0.1, 0.01, timings=extra)
        piece = repo.get_piece(pid)
        assert piece is not None
        outcome = store_piece(piece, persona, TimedImage(generated, now, now, 0.1), storage, repo, now)
        row = repo.get_piece(pid)
        assert row is not None and row.record is not None
        assert (
            float(row.record.extra[DENOISE_S]) == denoise
            and row.generation_fingerprint == record.fingerprint()
        )
        assert read_provenance(storage.get(outcome.storage_key)).record == row.record

    pieces = repo.pieces(batch_id=batch_id)
    text = batch_summary_markdown(repo.batch_stats(batch_id), pieces)
    assert "Mean time per generation: load 0.750 s, denoise 0.500 s, decode 0.125 s." in text.splitlines()
