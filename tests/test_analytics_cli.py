"""``contentforge analytics``: one-line refusals, the CSV import, best times on thin data, the demo."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from contentforge_cli.main import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["analytics", *args])
    return result.exit_code, result.output


def test_bad_input_is_refused_in_one_line(settings_env: Path, tmp_path: Path) -> None:
    code, out = run("best-times", "nobody", "--platform", "myspace")
    assert (
        code == 2 and out.strip() == "error: unknown platform 'myspace'; analytics knows instagram, x, tiktok"
    )
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Media,When\n1,2026-03-01\n", encoding="utf-8")
    code, out = run("import", str(wrong), "--platform", "instagram", "--account", "hist")
    assert code == 2 and len(out.strip().splitlines()) == 1 and "lacks the column(s) 'Post ID'" in out
    code, out = run("report", "nobody")
    assert code == 2 and "no metrics for 'nobody' on instagram" in out


def test_import_then_best_times_on_thin_data_keeps_the_configured_slots(
    settings_env: Path, tmp_path: Path
) -> None:
    export = tmp_path / "ig.csv"
    export.write_text(
        "Post ID,Publish time,Reach,Likes,Comments\n"
        "1,2026-03-01T09:00:00+00:00,500,40,2\n2,2026-03-02T18:00:00+00:00,700,55,4\n",
        encoding="utf-8",
    )
    args = (
        "import",
        str(export),
        "-p",
        "instagram",
        "--account",
        "hist",
        "--exported-at",
        "2026-03-10T00:00+00:00",
    )
    code, out = run(*args)
    assert code == 0 and "2 rows: 2 new posts, 2 new snapshots, 0 replaced" in out
    code, out = run(*args)
    assert code == 0 and "0 new posts, 0 new snapshots, 2 replaced" in out
    code, out = run("best-times", "hist")
    assert code == 0 and "default: only 0 posts (at least 30 needed); the configured slots stay" in out
    code, out = run("predict", "no-such-batch")
    assert code == 2 and "no pieces in batch 'no-such-batch'" in out
    code, out = run("resume", "hist", "-p", "instagram")
    assert code == 0 and "no active pause for 'hist' on instagram" in out


@pytest.mark.slow
def test_demo_fills_labelled_simulated_accounts_and_writes_reports(
    settings_env: Path, tmp_path: Path
) -> None:
    demo = ("demo", "--days", "45", "--accounts", "1", "--out", str(tmp_path / "demo"))
    code, out = run(*demo)
    assert code == 0, out
    assert "sim-demo-1 [SIMULATED]: planted best hour 19:00" in out
    report = (tmp_path / "demo" / "sim-demo-1" / "report.md").read_text(encoding="utf-8")
    assert "(SIMULATED data)" in report and "![best-times.png](best-times.png)" in report
    assert (tmp_path / "demo" / "sim-demo-1" / "reach.png").read_bytes()[:4] == b"\x89PNG"
    code, alerts = run("alerts")
    assert code == 0 and "sim-demo-1 on instagram [simulated]: reach drop" in alerts
    posts = report.split(" posts with normalized engagement")[0].split()[-1]
    assert run(*demo)[0] == 0  # a rerun replaces the demo account instead of doubling its posts
    code, again = run("report", "sim-demo-1")
    assert code == 0 and f"{posts} posts with normalized engagement" in again
