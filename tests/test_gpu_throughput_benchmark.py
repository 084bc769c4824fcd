"""benchmarks/gpu_throughput.py: its CPU modes, its like-for-like comparison and its full-size architectures.

Timings are not checked (they go to the JSON, not to asserts). What is checked: the JSON has the fields
docs/benchmarks.md describes, ContentForge's backend and the plain diffusers loop make the same images
from the same seeds (so their images/s compare like for like), and the random-weight architectures have
the published models' parameter counts (built on the meta device, which allocates nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.gpu_throughput import STRATEGIES, main
from contentforge.images import pool as pools

pytestmark = pytest.mark.slow

PIXEL_TOLERANCE = 1
"""Out of 255: the plain loop encodes a batch's prompts in one text-encoder call, ContentForge one prompt
at a time; on CPU the two matmul shapes may differ in the last float bit, which can flip an 8-bit rounding.
A different seed, prompt, guidance or size changes pixels by far more."""


@pytest.fixture(autouse=True)
def _no_pools_left() -> Any:
    yield
    pools.clear()


def check_cpu_run(figures: dict[str, Any], batch_sizes: list[int]) -> None:
    assert figures["benchmark"] == "gpu_throughput" and figures["device"] == "cpu"
    assert figures["gpu"] is None and figures["command"].startswith("python benchmarks/gpu_throughput.py")
    assert [row["batch_size"] for row in figures["throughput"]] == batch_sizes
    for row in figures["throughput"]:
        assert row["plain_images_per_s"] > 0 and row["contentforge_images_per_s"] > 0
        speed = row["contentforge_images_per_s"] / row["plain_images_per_s"]
        assert row["ratio"] == pytest.approx(speed, rel=0.01)
        assert row["max_pixel_difference"] <= PIXEL_TOLERANCE, row
    assert figures["best_batch_size"] in batch_sizes
    fifty = figures["fifty_images"]
    assert fifty["seconds"] > 0 and fifty["how"].startswith("extrapolated")
    assert [entry["strategy"] for entry in figures["memory"]] == list(STRATEGIES)
    for entry in figures["memory"]:
        assert entry["peak_vram_gb"] is None and "CUDA" in entry["skipped"]
    assert figures["targets"]["meaningful_here"] is False
    assert figures["passed"]["offload_peak_vram"] is None
    assert isinstance(figures["passed"]["contentforge_at_least_ratio_of_plain"], bool)


def test_tiny_sdxl_mode_compares_equal_images_on_cpu() -> None:
    figures = main(["--tiny", "--device", "cpu", "--fifty", "extrapolate"])

    check_cpu_run(figures, [1, 2])
    assert (figures["mode"], figures["family"], figures["resolution"]) == ("tiny", "sdxl", "64x64")
    assert (figures["steps"], figures["dtype"], figures["guidance_scale"]) == (2, "float32", 5.0)
    assert figures["throughput"][0]["images"] == 2


def test_tiny_flux_mode_runs_the_flux_layout_through_both_sides() -> None:
    figures = main(["--tiny", "--family", "flux", "--device", "cpu", "--fifty", "extrapolate"])

    check_cpu_run(figures, [1, 2])
    assert figures["family"] == "flux" and figures["guidance_scale"] == 3.5


def test_real_model_folder_is_benchmarked_with_its_detected_family(tmp_path: Path) -> None:
    from contentforge.images.tiny import build_tiny_sd15_pipeline

    folder = tmp_path / "sd15"
    build_tiny_sd15_pipeline(0).save_pretrained(folder, safe_serialization=True)
    argv = ["--model", str(folder), "--device", "cpu", "--width", "64", "--height", "64", "--steps", "2"]

    figures = main([*argv, "--batch-sizes", "1,3", "--images", "3", "--fifty", "extrapolate"])

    check_cpu_run(figures, [1, 3])
    assert (figures["family"], figures["weights"], figures["mode"]) == ("sd15", str(folder), "full")
    assert figures["guidance_scale"] == 7.5 and figures["throughput"][1]["images"] == 3


def test_dry_run_builds_sdxl_with_the_published_parameter_counts() -> None:
    figures = main(["--dry-run"])

    assert figures["mode"] == "dry-run" and figures["pipeline"] == "StableDiffusionXLPipeline"
    counts = figures["parameters"]
    # stabilityai/stable-diffusion-xl-base-1.0: UNet 2.567 B, CLIP ViT-L 123 M, OpenCLIP bigG 695 M, VAE 84 M.
    assert counts["unet"] == pytest.approx(2_567_463_684, rel=1e-3)
    assert counts["text_encoder"] == pytest.approx(123_060_480, rel=1e-3)
    assert counts["text_encoder_2"] == pytest.approx(694_659_840, rel=1e-3)
    assert counts["vae"] == pytest.approx(83_653_863, rel=1e-3)
    assert figures["weights_gb"] == pytest.approx(sum(counts.values()) * 2 / 1e9, rel=0.01)  # bf16
    assert figures["would_run"]["resolution"] == "1024x1024" and figures["would_run"]["steps"] == 30


def test_dry_run_builds_flux_dev_with_the_published_parameter_counts() -> None:
    figures = main(["--dry-run", "--family", "flux"])

    assert figures["pipeline"] == "FluxPipeline"
    counts = figures["parameters"]
    # black-forest-labs/FLUX.1-dev: transformer 11.9 B, T5 v1.1 XXL encoder 4.76 B.
    assert counts["transformer"] == pytest.approx(11_901_408_320, rel=1e-3)
    assert counts["text_encoder_2"] == pytest.approx(4_762_310_656, rel=1e-3)


def test_full_size_on_a_cpu_is_refused_before_building_anything() -> None:
    with pytest.raises(SystemExit, match="need a CUDA"):
        main(["--device", "cpu"])


@pytest.mark.parametrize(
    "argv",
    [
        ["--tiny", "--width", "65"],
        ["--tiny", "--batch-sizes", "0,2"],
        ["--tiny", "--model", "x"],
        ["--dry-run", "--family", "sd15"],
    ],
)
def test_bad_arguments_fail_before_any_pipeline_is_built(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2  # argparse's usage error
