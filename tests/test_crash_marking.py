"""Crashed runs are marked: a batch process killed with ``kill -9`` ends Crashed in Prefect (with its
GPU-stage subflow) within the crash automation's window, its batch stops being ``running``, and the
resume links its own run. The automation is the one ``tasks.bootstrap`` creates, idempotently.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
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

from contentforge.config import get_settings

SQL_PIECES = "SELECT id, status, content_sha256 FROM pieces WHERE batch_id = :b"
MADE = {"generated", "ready", "needs_review", "rejected", "failed"}


@pytest.mark.slow
def test_bootstrap_creates_the_crash_automation_once(prefect_server: str) -> None:
    from prefect.client.orchestration import get_client

    from tasks.bootstrap import (
        CRASH_AUTOMATION,
        crash_automation,
        delete_automation_if_present,
        ensure_crash_automation,
    )

    settings = get_settings()
    ensure_crash_automation(settings)
    assert ensure_crash_automation(settings) == "unchanged"
    assert ensure_crash_automation(settings, update=False) == "unchanged"
    with get_client(sync_client=True) as client:
        client.create_automation(crash_automation(settings))  # as if a second process raced the first
        assert len(client.read_automations_by_name(CRASH_AUTOMATION)) == 2
    assert ensure_crash_automation(settings.model_copy(update={"crash_after_s": 300})) == "updated"
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(CRASH_AUTOMATION)
    assert automation.trigger.within.total_seconds() == 300
    assert automation.trigger.posture == "Proactive"
    assert "prefect.flow-run.heartbeat" in automation.trigger.expect
    assert automation.actions[0].type == "change-flow-run-state"
    assert ensure_crash_automation(settings) == "updated"

    # A duplicate another process deleted a moment earlier is no error (three flows starting together).
    with get_client(sync_client=True) as client:
        duplicate = client.create_automation(crash_automation(settings))
        client.delete_automation(duplicate)
        delete_automation_if_present(client, duplicate)
    assert ensure_crash_automation(settings) == "unchanged"


@pytest.fixture(scope="module")
def killed_batch(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A CLI batch killed with SIGKILL right after its 3rd image was stored (not recorded)."""
    from contentforge.personas import sample_persona

    data_dir = tmp_path_factory.mktemp("crash-data")
    repository(data_dir).upsert_persona(sample_persona())
    env = cli_env(data_dir, prefect_server)
    batch_id = f"crash-{uuid.uuid4().hex[:8]}"
    args = ["produce", "mia-fit", "-n", "6", "--batch-id", batch_id]
    with crash_window(CRASH_WINDOW_S):
        code, output = finish(start_cli(args, {**env, "CONTENTFORGE_FAULT_KILL_AT": "image-stored@3"}))
        assert killed(code), output[-3000:]
        (row,) = [b for b in repository(data_dir).latest_batches() if b.id == batch_id]
        yield {"data_dir": data_dir, "env": env, "args": args, "batch_id": batch_id, "row": row}


@pytest.mark.slow
def test_a_killed_batch_run_and_its_gpu_subflow_end_crashed(killed_batch: dict[str, Any]) -> None:
    run_id = killed_batch["row"].flow_run_id
    runs = [run_id, *(str(child.id) for child in child_runs(run_id))]
    assert len(runs) == 2, "the batch run and its in-process GPU-stage subflow"
    states = wait_for_states(runs, lambda state: state.is_crashed(), timeout_s=CRASH_WINDOW_S + 40)
    assert all(state.is_crashed() for state in states.values()), {k: s.name for k, s in states.items()}
    assert all("No heartbeat" in (state.message or "") for state in states.values())


@pytest.mark.slow
def test_a_killed_batch_is_no_longer_running_and_its_resume_links_the_new_run(
    killed_batch: dict[str, Any],
) -> None:
    import time

    data_dir, batch_id = killed_batch["data_dir"], killed_batch["batch_id"]
    repo = repository(data_dir)
    time.sleep(LEASE_S + 1)  # the dead run's lease expires
    (row,) = [b for b in repo.latest_batches() if b.id == batch_id]
    assert row.status == "crashed", "listings report a running batch whose lease ran out as crashed"
    assert repo.reconcile_expired_batches(batch_id) == [batch_id], "and reconciling writes it"
    (raw,) = query(data_dir, "SELECT status, lease_owner FROM batches WHERE id = :b", b=batch_id)
    assert tuple(raw) == ("crashed", None)
    # Its unfinished pieces read crashed with it; the ones recorded before the kill keep their status.
    pieces = {row.id: row for row in query(data_dir, SQL_PIECES, b=batch_id)}
    unmade = {pid for pid, row in pieces.items() if row.content_sha256 is None}
    # (The kill comes when the 3rd image is stored; how many were recorded by then varies.)
    assert len(pieces) == 6 and unmade, pieces
    assert {pieces[pid].status for pid in unmade} == {"crashed"}, pieces
    assert {row.status for pid, row in pieces.items() if pid not in unmade} <= MADE, pieces

    code, output = run_cli(killed_batch["args"], killed_batch["env"])
    assert code == 0, output[-3000:]
    (row,) = [b for b in repo.latest_batches() if b.id == batch_id]
    assert row.status == "completed"
    after = {row.id: row.status for row in query(data_dir, SQL_PIECES, b=batch_id)}
    assert set(after.values()) <= MADE, ("the resume made every crashed piece", after)
    new_run = row.flow_run_id
    assert new_run != killed_batch["row"].flow_run_id
    links = re.findall(r"/runs/flow-run/([0-9a-f-]{36})", output)
    assert links == [new_run], output[-2000:]
