"""The real batch flow on the tiny pipeline, against a real local Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contentforge.config import get_settings
from contentforge.domain import PieceStatus, Platform
from contentforge.images.provenance import DIGITAL_SOURCE_TYPE, read_provenance
from contentforge.metrics import concurrency_figures
from contentforge.personas import sample_persona
from contentforge.text.platform_rules import check_caption

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def flow_env(settings_env: Path, prefect_server: str):  # type: ignore[no-untyped-def]
    from tasks import resources
    from tasks.bootstrap import ensure_concurrency_limit

    settings = get_settings()
    ensure_concurrency_limit(settings.concurrency_limit_name, settings.generation_slots)
    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    return repo


def test_fifty_piece_batch_end_to_end(flow_env, settings_env: Path) -> None:  # type: ignore[no-untyped-def]
    from flows.produce_content_batch import produce_content_batch

    stats = produce_content_batch(persona="mia-fit", num_pieces=50, platform="instagram", seed=7)
    rows = flow_env.pieces(batch_id=stats["batch_id"])
    assert len(rows) == 50
    assert stats["by_status"][PieceStatus.failed.value] == 0
    files = sorted((settings_env / "content" / "mia-fit").glob("*.png"))
    assert len(files) == 50
    for row in rows:
        assert row.status in (PieceStatus.ready, PieceStatus.rejected)
        assert row.verdict is not None and row.moderation_scores
        provenance = read_provenance(settings_env / row.storage_key)
        assert provenance.digital_source_type == DIGITAL_SOURCE_TYPE
        assert provenance.record == row.record
        assert len(row.hooks) == 5
        assert len({hook.style for hook in row.hooks}) == 5
        for hook in row.hooks:
            assert check_caption(hook.caption, hook.hashtags, Platform.instagram) == []
    figures = concurrency_figures(((r.started_at, r.finished_at) for r in rows), slots=5)
    assert 1 <= figures.peak_concurrent <= 5
    assert {r.template_tier for r in rows} == {"safe", "suggestive"}
    assert sum(r.template_tier == "suggestive" for r in rows) == 15


def test_rerun_of_a_batch_duplicates_nothing(flow_env, settings_env: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from flows.produce_content_batch import produce_content_batch

    monkeypatch.setenv("CONTENTFORGE_IMAGE_COST_USD", "0.01")
    get_settings.cache_clear()
    first = produce_content_batch(persona="mia-fit", num_pieces=4, seed=3, batch_id="rerun-batch-0001")
    files = {p: p.stat().st_mtime_ns for p in (settings_env / "content" / "mia-fit").glob("*.png")}
    second = produce_content_batch(persona="mia-fit", num_pieces=4, seed=3, batch_id="rerun-batch-0001")
    assert second["pieces"] == first["pieces"] == 4
    assert second["cost_usd_total"] == pytest.approx(first["cost_usd_total"]) == pytest.approx(0.04)
    assert {p: p.stat().st_mtime_ns for p in files} == files


def test_a_failing_piece_does_not_fail_the_batch(flow_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from contentforge.errors import InvalidLora
    from flows.produce_content_batch import produce_content_batch
    from tasks import resources

    real = resources.image_backend()

    class FailsOnce:
        name = real.name

        def describe(self) -> str:
            return "fails for one seed"

        def generate(self, request):  # type: ignore[no-untyped-def]
            if request.seed == doomed_seed:
                raise InvalidLora("broken.safetensors: not a LoRA for this model")
            return real.generate(request)

    from contentforge.batch import piece_seed

    doomed_seed = piece_seed(5, 1)
    monkeypatch.setattr(resources, "image_backend", lambda: FailsOnce())
    stats = produce_content_batch(persona="mia-fit", num_pieces=3, seed=5)
    rows = {r.index: r for r in flow_env.pieces(batch_id=stats["batch_id"])}
    assert rows[1].status is PieceStatus.failed
    assert "broken.safetensors" in (rows[1].error or "")
    assert rows[0].status is not PieceStatus.failed and rows[2].status is not PieceStatus.failed


def test_three_simultaneous_batches_never_exceed_five(prefect_server: str, tmp_path: Path) -> None:
    """Three batches in three processes share the global limit (fixed-latency backend, 0.2 s)."""
    env = dict(os.environ, CONTENTFORGE_DATA_DIR=str(tmp_path / "bench"))
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "orchestration.py"),
            "--batches",
            "3",
            "--pieces",
            "10",
            "--latency",
            "0.2",
            "--data-dir",
            str(tmp_path / "bench"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["pieces"] == 30 and figures["pieces_generated"] == 30
    assert 1 <= figures["peak_concurrent_generations"] <= 5


def test_limits_that_cannot_be_bootstrapped_fail_the_batch_before_any_generation(  # type: ignore[no-untyped-def]
    flow_env, monkeypatch
) -> None:
    """The limits are read beside taking and planning the batch, and waited for before the first
    generation: when the server refuses them, the batch ends failed and nothing was generated."""
    from flows.produce_content_batch import produce_content_batch
    from tasks import bootstrap

    def refused(name: str, limit: int) -> str:
        raise RuntimeError(f"the server refused the limit {name}")

    monkeypatch.setattr(bootstrap, "create_limit_if_absent", refused)
    with pytest.raises(RuntimeError, match="refused the limit"):
        produce_content_batch(persona="mia-fit", num_pieces=3, seed=5, batch_id="limits-refused-01")
    summary = next(b for b in flow_env.latest_batches(50) if b.id == "limits-refused-01")
    assert summary.status == "failed"
    rows = flow_env.pieces(batch_id="limits-refused-01")
    assert len(rows) == 3 and {row.status for row in rows} == {PieceStatus.planned}  # planned, none generated
