"""The benchmark scripts run end to end at tiny sizes and print the JSON they document.

Shape and consistency only, never speed: the figures themselves come from the scripts, committed under
benchmarks/results/ (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(args: list[str], env: dict[str, str], timeout: int = 600) -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_orchestration_sweep_reports_every_point(prefect_server: str, tmp_path: Path) -> None:
    env = dict(os.environ, PREFECT_API_URL=prefect_server)
    result = _run(
        [
            "benchmarks/orchestration.py",
            "--sweep",
            "--sweep-points",
            "1x2,2x3",
            "--latency",
            "0.05",
            "--data-dir",
            str(tmp_path),
        ],
        env,
    )
    assert result["machine"]["cpu_count"] == os.cpu_count()
    assert len(result["machine"]["loadavg"]) == 3
    points = result["sweep"]
    assert [(p["batches"], p["pieces"]) for p in points] == [(1, 2), (2, 6)]
    for point in points:
        assert point["pieces_generated"] == point["pieces"], "every piece generated once"
        assert 1 <= point["peak_concurrent_generations"] <= 5
        assert point["bare_loop_best"]["concurrency"] == 5  # the fixed-latency backend uses every slot
        assert point["api_calls"] > 0 and point["api_calls_per_piece"] > 0
        assert point["events"] > 0 and "prefect.task-run.Completed" in point["events_top"]
        assert point["peak_rss_mb"] > 50
        assert point["rss_growth_mb_after_piece_50"] is None  # only measured from 100 pieces up
        assert point["wall_to_bare"] > 0


def test_orchestration_refuses_a_malformed_sweep_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/orchestration.py", "--sweep", "--sweep-points", "3by50"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "--sweep-points: expected BATCHESxPIECES[,…] such as 1x50,3x50; got '3by50'"
    ]


@pytest.mark.postgres
def test_seed_then_api_reads_report_percentiles_per_endpoint(pg_url: str) -> None:
    env = dict(os.environ)
    seeded = _run(
        [
            "benchmarks/seed_pieces.py",
            "--database-url",
            pg_url,
            "--personas",
            "3",
            "--batches",
            "6",
            "--pieces",
            "120",
        ],
        env,
    )
    assert (seeded["batches"], seeded["pieces"]) == (6, 120)
    assert seeded["hooks"] % 5 == 0 and 0 < seeded["hooks"] <= 5 * 120, "five hooks per generated piece"
    result = _run(
        ["benchmarks/api_reads.py", "--database-url", pg_url, "--requests", "8", "--clients", "2"], env
    )
    assert result["tables"]["pieces"] == 120
    assert set(result["endpoints"]) == {"list", "stats", "batch", "batch_pieces", "gallery"}
    assert set(result["floor"]) == {"health", "persona"}
    for figures in [*result["endpoints"].values(), *result["floor"].values()]:
        assert figures["requests"] == 8
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["max_ms"]
        assert figures["server_cpu_ms"] >= 0  # whole clock ticks: a few quick requests may read 0
    assert result["machine"]["cpu_count"] == os.cpu_count()


def test_seed_refuses_a_remote_database_in_one_line() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/seed_pieces.py",
            "--database-url",
            "postgresql+psycopg://u@db.example.com/x",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "--database-url must be a loopback server, not 'db.example.com'"
    ]


def test_prompt_encoding_compares_compels_parsing_with_the_shared_one() -> None:
    result = _run(
        ["benchmarks/prompt_encoding.py", "--pieces", "3", "--awkward-words", "20"], dict(os.environ)
    )
    assert result["pieces"] == 3 and result["distinct_negative_prompts"] >= 1
    assert result["same_embeddings"] is True
    assert result["compel_parsing_s_per_image"] > 0 and result["shared_parsing_s_per_image"] > 0
    assert set(result["awkward_prompt_one_parse"]) == {"without_packrat_s", "with_packrat_s", "words"}
