"""The batch flow's follow-up loop sees every piece that leaves ``planned``, reading only what changed.

``PieceStatusWatcher`` (contentforge/db/batch_progress.py) against SQLite and PostgreSQL: each poll
returns exactly the pieces started so far with their statuses, a poll with nothing new reads no row,
and a 500-piece batch costs as many row reads as it has pieces, not pieces times polls.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update
from support.planned import plan_batch

from contentforge.db import Repository
from contentforge.db.batch_progress import PieceStatusWatcher
from contentforge.db.models import PieceORM
from contentforge.personas import sample_persona


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Repository:
    url = (
        f"sqlite:///{tmp_path / 'cf.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    )
    repo = Repository.open(url)
    repo.upsert_persona(sample_persona())
    return repo


def _set_status(repo: Repository, piece_ids: list[str], status: str) -> None:
    with repo.sessions.write() as session:
        session.execute(update(PieceORM).where(PieceORM.id.in_(piece_ids)).values(status=status))


def test_each_poll_sees_every_started_piece_and_reads_only_the_new_ones(repo: Repository) -> None:
    ids = plan_batch(repo, "watch-a", 6)
    plan_batch(repo, "watch-other", 3)  # another batch's pieces are never reported
    _set_status(repo, ["watch-other-000", "watch-other-001"], "generated")
    watcher = PieceStatusWatcher(repo.sessions, "watch-a")

    assert watcher.poll() == {} and watcher.rows_read == 0
    _set_status(repo, ids[:2], "generated")
    repo.mark_failed(ids[2], "boom")
    assert watcher.poll() == {ids[0]: "generated", ids[1]: "generated", ids[2]: "failed"}
    assert watcher.rows_read == 3
    assert watcher.poll() == {ids[0]: "generated", ids[1]: "generated", ids[2]: "failed"}
    assert watcher.rows_read == 3, "a poll with nothing new reads no row"
    # A started piece moving on (moderation) is the flow's business, not a new row to read...
    _set_status(repo, ids[:1], "ready")
    _set_status(repo, ids[3:5], "generated")
    assert set(watcher.poll()) == set(ids[:5]) and watcher.rows_read == 5
    # ...until the full read the flow asks for once the images are done: then every status is current.
    assert watcher.poll(full=True)[ids[0]] == "ready"


def test_a_piece_back_in_planned_is_forgotten_and_seen_again_when_it_starts(repo: Repository) -> None:
    ids = plan_batch(repo, "watch-b", 4)
    watcher = PieceStatusWatcher(repo.sessions, "watch-b")
    _set_status(repo, ids[:2], "failed")
    assert set(watcher.poll()) == set(ids[:2])
    _set_status(repo, ids[:1], "planned")  # a reset (a resumed batch's retry): the count goes down
    assert watcher.poll() == {ids[1]: "failed"}
    _set_status(repo, [ids[0], ids[2]], "generated")
    assert watcher.poll() == {ids[1]: "failed", ids[0]: "generated", ids[2]: "generated"}


def test_reads_grow_with_the_pieces_not_with_the_polls(repo: Repository) -> None:
    ids = plan_batch(repo, "watch-c", 500)
    watcher = PieceStatusWatcher(repo.sessions, "watch-c")
    for start in range(0, 500, 25):
        _set_status(repo, ids[start : start + 25], "generated")
        for _ in range(3):  # several polls per change, as the flow's quarter-second polls do
            statuses = watcher.poll()
        assert len(statuses) == start + 25
    assert watcher.rows_read == 500
