"""Fault injection, process level: ``kill -9`` at chosen points, resumes, two concurrent runners.

One batch is run through the real CLI four times against the session's Prefect server: killed once
its 2nd hooks are saved, once its 2nd image is stored but not recorded, once its 2nd verdict is
saved, then resumed to the end (``contentforge.faults``; each kill is SIGKILL, so no ``finally``,
hook or ``atexit`` runs). What it left is then checked the way a user would check it: every piece
generated and charged once, every stored object written once, no text charged twice, every ready
piece's verdict bound to its content, every killed run marked Crashed by the crash automation
within its window, and published exactly once per piece by two concurrent ``publish due`` runs. A
second concurrent runner of a live batch is refused with one line naming the holder.
"""

from __future__ import annotations

import csv
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.faults import (
    CRASH_WINDOW_S,
    LEASE_S,
    child_runs,
    cli_env,
    crash_window,
    finish,
    killed,
    query,
    repository,
    run_cli,
    start_cli,
    wait_for_states,
)

pytestmark = pytest.mark.slow

PIECES = 10
KILLS = ("hooks-saved@2", "image-stored@2", "verdict-saved@2")


def _files(data_dir: Path) -> dict[str, tuple[int, int]]:
    """Every stored image: path -> (inode, mtime in ns); a rewrite (``os.replace``) changes both."""
    return {
        str(path.relative_to(data_dir)): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in data_dir.rglob("*.png")
        if not path.name.startswith(".") and "outbox" not in path.parts
    }


def _hooks(data_dir: Path, batch_id: str) -> set[tuple[Any, ...]]:
    """Every saved hook row with its id: a rewrite (delete and insert) gives new ids."""
    rows = query(
        data_dir,
        "SELECT h.id, h.piece_id, h.text FROM hooks h JOIN pieces p ON p.id = h.piece_id"
        " WHERE p.batch_id = :b",
        b=batch_id,
    )
    return {tuple(row) for row in rows}


@pytest.fixture(scope="module")
def chain(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from contentforge.personas import sample_persona

    data_dir = tmp_path_factory.mktemp("faults-data")
    repository(data_dir).upsert_persona(sample_persona())
    env = cli_env(data_dir, prefect_server)
    batch_id = f"faults-{uuid.uuid4().hex[:8]}"
    args = ["produce", "mia-fit", "-n", str(PIECES), "--batch-id", batch_id]
    killed_runs: list[str] = []
    snapshots: list[dict[str, tuple[int, int]]] = []
    hook_rows: list[set[tuple[Any, ...]]] = []
    with crash_window(CRASH_WINDOW_S):
        started = time.monotonic()
        for point in KILLS:
            code, output = finish(start_cli(args, {**env, "CONTENTFORGE_FAULT_KILL_AT": point}))
            assert killed(code), f"not killed at {point}:\n{output[-3000:]}"
            (row,) = [b for b in repository(data_dir).latest_batches() if b.id == batch_id]
            assert row.status == "running", "killed: no hook ran, its lease is still held"
            killed_runs.append(row.flow_run_id)
            snapshots.append(_files(data_dir))
            hook_rows.append(_hooks(data_dir, batch_id))
            time.sleep(LEASE_S + 0.5)  # the dead runner's lease expires; the resume takes the batch over
        code, output = run_cli(args, env)
        assert code == 0, output[-3000:]
        yield {
            "data_dir": data_dir,
            "env": env,
            "batch_id": batch_id,
            "killed_runs": killed_runs,
            "snapshots": snapshots,
            "final": _files(data_dir),
            "hook_rows": hook_rows,
            "output": output,
            "started": started,
        }


def test_no_piece_is_generated_or_charged_twice(chain: dict[str, Any]) -> None:
    data_dir, batch_id = chain["data_dir"], chain["batch_id"]
    pieces = query(data_dir, "SELECT id, status FROM pieces WHERE batch_id = :b", b=batch_id)
    assert len(pieces) == PIECES
    charges = query(
        data_dir,
        "SELECT piece_id, charge_key FROM cost_entries WHERE kind = 'image' AND batch_id = :b",
        b=batch_id,
    )
    rows = {row.id: row for row in repository(data_dir).pieces(batch_id=batch_id)}
    kept = {}
    for piece_id, row in rows.items():
        record = row.record
        assert record is not None
        kept[piece_id] = f"image:{piece_id}:{record.extra['generation_id']}"
    keys = {key for _, key in charges}
    assert set(kept.values()) <= keys, "the kept image of every piece was charged"
    # A stored image is never generated again: the file (never rewritten, see the next test) still names
    # the generation the piece's record names, so no later generation replaced it.
    from contentforge.images.provenance import read_provenance

    for piece_id, row in rows.items():
        assert row.storage_key is not None
        stored = read_provenance(next(data_dir.rglob(Path(row.storage_key).name)).read_bytes()).record
        assert stored is not None and f"image:{piece_id}:{stored.extra['generation_id']}" == kept[piece_id]
    # Any other charge is a generation that really ran and was lost with its process before its image
    # reached storage (charged before storing, so it is paid for): at most one per slot and kill.
    extra = Counter(piece_id for piece_id, key in charges if key != kept[piece_id])
    assert sum(extra.values()) <= len(KILLS) * 5, extra


def test_no_stored_object_is_written_twice(chain: dict[str, Any]) -> None:
    final = chain["final"]
    assert len(final) == PIECES
    for snapshot in chain["snapshots"]:
        for path, identity in snapshot.items():
            assert final[path] == identity, f"{path} was written again after a kill"
    assert chain["snapshots"][1], "the image-stored kill left a stored, unrecorded image to adopt"


def test_no_text_is_charged_twice_and_hooks_are_never_rewritten(chain: dict[str, Any]) -> None:
    data_dir, batch_id = chain["data_dir"], chain["batch_id"]
    text_charges = query(
        data_dir,
        "SELECT piece_id, kind, COUNT(*) FROM cost_entries WHERE kind != 'image' AND batch_id = :b "
        "AND piece_id IS NOT NULL GROUP BY piece_id, kind HAVING COUNT(*) > 1",
        b=batch_id,
    )
    assert text_charges == []
    hooks = query(
        data_dir,
        "SELECT h.piece_id, COUNT(*) FROM hooks h JOIN pieces p ON p.id = h.piece_id "
        "WHERE p.batch_id = :b GROUP BY h.piece_id",
        b=batch_id,
    )
    assert len(hooks) == PIECES and {count for _, count in hooks} == {5}
    final = _hooks(data_dir, batch_id)
    for saved in chain["hook_rows"]:
        assert saved <= final, f"hooks saved before a kill were rewritten: {sorted(saved - final)[:3]}"
    assert chain["hook_rows"][0], "the hooks-saved kill left hooks to keep"


def test_every_ready_piece_is_moderated_on_exactly_its_content(chain: dict[str, Any]) -> None:
    from contentforge.domain.binding import image_sha256, judged_hash, judged_texts

    data_dir = chain["data_dir"]
    rows = repository(data_dir).pieces(batch_id=chain["batch_id"])
    ready = [row for row in rows if row.status.value == "ready"]
    assert ready, [row.status for row in rows]
    moderated = dict(
        query(data_dir, "SELECT id, moderated_hash FROM pieces WHERE batch_id = :b", b=chain["batch_id"])
    )
    for row in ready:
        assert row.storage_key is not None
        data = next(data_dir.rglob(Path(row.storage_key).name)).read_bytes()
        assert moderated[row.id] == judged_hash(image_sha256(data), judged_texts(row.prompt, row.hooks))


def test_every_killed_run_ends_crashed_within_the_heartbeat_window(chain: dict[str, Any]) -> None:
    killed_runs = list(chain["killed_runs"])
    children = [str(child.id) for run_id in killed_runs for child in child_runs(run_id)]
    # The last kill happened at most a heartbeat window ago; allow the automation's 5 s evaluation step.
    # A GPU-stage subflow may have finished before its parent was killed: Completed is an end too.
    states = wait_for_states(
        killed_runs + children,
        lambda state: state.is_crashed() or state.is_completed(),
        timeout_s=CRASH_WINDOW_S + 40,
    )
    left = {r: s.name for r, s in states.items() if not (s.is_crashed() or s.is_completed())}
    assert not left, f"left running after their process died: {left}"
    parents = {run_id: states[run_id].name for run_id in killed_runs}
    assert all(states[run_id].is_crashed() for run_id in killed_runs), parents
    (row,) = [b for b in repository(chain["data_dir"]).latest_batches() if b.id == chain["batch_id"]]
    assert row.status == "completed" and row.flow_run_id not in chain["killed_runs"]


def test_a_second_runner_of_a_live_batch_is_refused_naming_the_holder(
    prefect_server: str, tmp_path: Path
) -> None:
    """Two ``produce`` of one batch id started together: one runs it, the other is refused at once."""
    from contentforge.personas import sample_persona

    data_dir = tmp_path / "data"
    repository(data_dir).upsert_persona(sample_persona())
    # 20 images of 1.5 s through 5 slots: the winner holds the batch ~6 s, far longer than the
    # loser takes to reach the lease after the same start.
    env = cli_env(data_dir, prefect_server, CONTENTFORGE_FIXED_LATENCY_S="1.5")
    batch_id = f"twice-{uuid.uuid4().hex[:8]}"
    args = ["produce", "mia-fit", "-n", "20", "--batch-id", batch_id]
    runners = [start_cli(args, env) for _ in range(2)]
    results = sorted((finish(runner) for runner in runners), key=lambda result: result[0])
    assert [code for code, _ in results] == [0, 2], [output[-2000:] for _, output in results]
    (_, winner), (_, loser) = results
    (run_id,) = re.findall(r"/runs/flow-run/([0-9a-f-]{36})", winner)
    errors = [line for line in loser.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, loser[-2000:]
    assert batch_id in errors[0] and f"flow run {run_id}" in errors[0], errors[0]
    assert query(data_dir, "SELECT COUNT(*) FROM cost_entries WHERE kind = 'image'") == [(20,)]


def test_two_concurrent_publish_runs_post_each_piece_exactly_once(chain: dict[str, Any]) -> None:
    data_dir, env = chain["data_dir"], chain["env"]
    rows = repository(data_dir).pieces(batch_id=chain["batch_id"])
    ready = [row.id for row in rows if row.status.value == "ready"]
    plan = data_dir / "plan.csv"
    when = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    with plan.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["piece_id", "platform", "when"])
        writer.writerows([piece_id, "instagram", when] for piece_id in ready)
    code, output = run_cli(["publish", "plan", str(plan)], env)
    assert code == 0, output[-2000:]
    runs = [start_cli(["publish", "due", "--limit", "50"], env) for _ in range(2)]
    results = [finish(run) for run in runs]
    assert all(code == 0 for code, _ in results), [out[-2000:] for _, out in results]
    published = query(
        data_dir,
        "SELECT piece_id, COUNT(*) FROM publications WHERE status = 'published' GROUP BY piece_id",
    )
    assert dict(published) == dict.fromkeys(ready, 1)
    posts = [p for p in data_dir.rglob("*.json") if "outbox" in p.parts]
    assert sorted(p.stem for p in posts) == sorted(ready), os.listdir(data_dir)
