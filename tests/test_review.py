"""Review queue: borderline pieces end in needs_review; reviewers approve or reject (CLI, paused flow)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support.review import PromptScores, make_batch
from typer.testing import CliRunner

from contentforge.batch import moderate_piece
from contentforge.config import Settings, get_settings
from contentforge.db import Repository, make_engine, migrate
from contentforge.db.models import ReviewDecisionORM
from contentforge.domain.models import PieceStatus, Verdict
from contentforge.errors import InvalidInput
from contentforge.moderation import ModerationPolicy, Moderator
from contentforge.moderation.review import ReviewQueue, ReviewStateError
from contentforge.storage import build_storage
from contentforge_cli.main import app


@pytest.fixture()
def env(settings_env: Path) -> tuple[Repository, ReviewQueue, Settings]:
    settings = get_settings()
    migrate(settings.resolved_database_url)
    repo = Repository(make_engine(settings.resolved_database_url))
    return repo, ReviewQueue.from_settings(settings), settings


def status(repo: Repository, piece_id: str) -> PieceStatus:
    row = repo.get_piece(piece_id)
    assert row is not None
    return row.status


def test_borderline_pieces_end_in_needs_review_others_are_decided(env) -> None:  # type: ignore[no-untyped-def]
    repo, queue, settings = env
    make_batch(
        repo, settings, "b1", ["score:hate=0.10", "score:hate=0.47", "score:hate=0.50", "score:sexual=0.88"]
    )
    assert [status(repo, f"b1-{i:03d}") for i in range(4)] == [
        PieceStatus.ready,
        PieceStatus.needs_review,
        PieceStatus.rejected,
        PieceStatus.needs_review,
    ]
    held = repo.get_piece("b1-001")
    assert held.verdict is Verdict.safe
    assert held.moderation_reasons[0].startswith("needs review: borderline: hate 0.47")
    assert repo.get_piece("b1-003").verdict is Verdict.restricted
    assert [item.piece_id for item in queue.pending(batch_id="b1")] == ["b1-001", "b1-003"]


def test_a_held_piece_is_not_moderated_again(env) -> None:  # type: ignore[no-untyped-def]
    repo, _queue, settings = env
    make_batch(repo, settings, "b1", ["score:hate=0.47"])
    piece = repo.get_piece("b1-000")
    moderator = Moderator([PromptScores()], ModerationPolicy.from_settings(settings))
    assert moderate_piece(piece, build_storage(settings), moderator, repo) == "safe"
    assert status(repo, "b1-000") is PieceStatus.needs_review


def test_pending_filters_by_batch_and_persona(env) -> None:  # type: ignore[no-untyped-def]
    repo, queue, settings = env
    make_batch(repo, settings, "b1", ["score:hate=0.47", "score:hate=0.0"])
    make_batch(repo, settings, "b2", ["score:violence=0.66"], who="leo")
    assert {i.piece_id for i in queue.pending()} == {"b1-000", "b2-000"}
    assert [i.piece_id for i in queue.pending(batch_id="b2")] == ["b2-000"]
    assert [i.piece_id for i in queue.pending(persona_id="mia")] == ["b1-000"]
    assert queue.pending(batch_id="b1", persona_id="leo") == []
    item = queue.pending(batch_id="b2")[0]
    assert item.scores["violence"] == pytest.approx(0.66) and item.persona_id == "leo"


def test_approve_and_reject_record_decisions(env) -> None:  # type: ignore[no-untyped-def]
    repo, queue, settings = env
    make_batch(repo, settings, "b1", ["score:hate=0.47", "score:sexual=0.88", "score:hate=0.48"])
    queue.approve("b1-000", reviewer="ana", reason="satire, fine")
    queue.reject("b1-001", reviewer="ben", reason="too revealing for the brand")
    queue.approve("b1-002", reviewer="ana", tier="suggestive")
    assert status(repo, "b1-000") is PieceStatus.ready
    assert repo.get_piece("b1-000").tier == "safe"
    rejected = repo.get_piece("b1-001")
    assert rejected.status is PieceStatus.rejected and rejected.tier is None
    assert repo.get_piece("b1-002").tier == "suggestive"
    (decision,) = queue.decisions("b1-001")
    assert (decision.decision, decision.reviewer, decision.reason) == (
        "reject",
        "ben",
        "too revealing for the brand",
    )
    with repo.sessions.read() as session:  # the raw table too
        rows = session.scalars(select(ReviewDecisionORM).order_by(ReviewDecisionORM.id)).all()
        assert [(r.piece_id, r.decision, r.reviewer) for r in rows] == [
            ("b1-000", "approve", "ana"),
            ("b1-001", "reject", "ben"),
            ("b1-002", "approve", "ana"),
        ]
    assert queue.pending() == []


def test_deciding_a_piece_not_in_review_fails_clearly(env) -> None:  # type: ignore[no-untyped-def]
    repo, queue, settings = env
    make_batch(repo, settings, "b1", ["score:hate=0.0", "score:hate=0.47"])
    with pytest.raises(ReviewStateError, match="'ready', not waiting for review"):
        queue.approve("b1-000", reviewer="ana")
    with pytest.raises(ReviewStateError, match="no piece"):
        queue.reject("nope", reviewer="ana", reason="x")
    with pytest.raises(InvalidInput, match="needs a reason"):
        queue.reject("b1-001", reviewer="ana", reason="  ")
    with pytest.raises(InvalidInput, match="reviewer"):
        queue.approve("b1-001", reviewer="")
    with pytest.raises(InvalidInput, match="tier"):
        queue.approve("b1-001", reviewer="ana", tier="rejected")
    queue.approve("b1-001", reviewer="ana")
    with pytest.raises(ReviewStateError, match="'ready'"):
        queue.reject("b1-001", reviewer="ben", reason="second opinion")
    assert len(queue.decisions("b1-001")) == 1


def test_cli_review_list_approve_reject(env) -> None:  # type: ignore[no-untyped-def]
    repo, _queue, settings = env
    make_batch(repo, settings, "b1", ["score:hate=0.47", "score:hate=0.46", "score:hate=0.0"])
    runner = CliRunner()
    listed = runner.invoke(app, ["review", "list", "--batch", "b1"])
    assert listed.exit_code == 0, listed.output
    assert "b1-000" in listed.output and "b1-001" in listed.output and "b1-002" not in listed.output
    ok = runner.invoke(app, ["review", "approve", "b1-000", "--reviewer", "ana", "--reason", "fine"])
    assert ok.exit_code == 0, ok.output
    no_reason = runner.invoke(app, ["review", "reject", "b1-001", "--reviewer", "ana"])
    assert no_reason.exit_code != 0
    bad = runner.invoke(app, ["review", "reject", "b1-002", "--reviewer", "ana", "--reason", "x"])
    assert bad.exit_code == 2 and "not waiting for review" in bad.output
    rej = runner.invoke(app, ["review", "reject", "b1-001", "--reviewer", "ana", "--reason", "off brand"])
    assert rej.exit_code == 0, rej.output
    assert status(repo, "b1-000") is PieceStatus.ready and status(repo, "b1-001") is PieceStatus.rejected


# --- the paused flow --------------------------------------------------------------------------------


def _paused_run_id(batch_id: str, deadline_s: float = 60.0) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + deadline_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
                sort=FlowRunSort.START_TIME_DESC,
                limit=50,
            )
            for run in runs:
                if run.parameters.get("batch_id") == batch_id:
                    return run.id
            time.sleep(0.3)
    raise AssertionError(f"no paused review run for {batch_id}")


def _start_review(batch_id: str, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    from flows.review_pieces import review_pieces

    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = review_pieces(batch_id, **kwargs)
        except BaseException as exc:  # surfaced by the test
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


@pytest.mark.slow
def test_review_flow_pauses_and_applies_approve_and_reject(env, prefect_server: str) -> None:  # type: ignore[no-untyped-def]
    from prefect.flow_runs import resume_flow_run

    repo, queue, settings = env
    make_batch(repo, settings, "rv1", ["score:hate=0.47", "score:sexual=0.88", "score:violence=0.66"])
    thread, result = _start_review("rv1", timeout_s=120, poll_interval_s=1)
    run_id = _paused_run_id("rv1")
    assert status(repo, "rv1-000") is PieceStatus.needs_review  # nothing decided while paused
    time.sleep(1.0)  # the input schema is saved right after the Paused state is set
    resume_flow_run(
        run_id,
        run_input={
            "reviewer": "ana",
            "decisions": [
                {"piece_id": "rv1-000", "decision": "approve", "reason": "context makes it fine"},
                {"piece_id": "rv1-001", "decision": "reject", "reason": "too explicit", "reviewer": "ben"},
                {"piece_id": "other-9", "decision": "approve"},
            ],
        },
    )
    thread.join(timeout=60)
    assert not thread.is_alive() and "error" not in result, result
    summary = result["summary"]
    assert summary["approved"] == ["rv1-000"] and summary["rejected"] == ["rv1-001"]
    assert summary["pending"] == ["rv1-002"] and len(summary["errors"]) == 1
    assert status(repo, "rv1-000") is PieceStatus.ready
    assert status(repo, "rv1-001") is PieceStatus.rejected
    assert status(repo, "rv1-002") is PieceStatus.needs_review
    assert [(d.decision, d.reviewer) for d in queue.decisions("rv1-001")] == [("reject", "ben")]
    assert [(d.decision, d.reviewer, d.reason) for d in queue.decisions("rv1-000")] == [
        ("approve", "ana", "context makes it fine")
    ]


@pytest.mark.slow
def test_review_flow_timeout_leaves_pieces_pending(env, prefect_server: str) -> None:  # type: ignore[no-untyped-def]
    repo, queue, settings = env
    make_batch(repo, settings, "rv2", ["score:hate=0.47"])
    thread, result = _start_review("rv2", timeout_s=3, poll_interval_s=1)
    thread.join(timeout=60)
    assert "error" not in result, result
    assert result["summary"]["timed_out"] is True and result["summary"]["pending"] == ["rv2-000"]
    assert status(repo, "rv2-000") is PieceStatus.needs_review
    assert queue.decisions("rv2-000") == []
