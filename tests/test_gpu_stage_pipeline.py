"""The GPU stage queues generations ahead of its task runs, and the batch moderates while it runs.

Against the session's real local Prefect server, with the labelled fixed-latency backend (it sleeps
instead of running a model), so the tests are about orchestration and take seconds.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contentforge.config import get_settings
from contentforge.domain import PieceStatus
from contentforge.images.fixed_latency import FixedLatencyBackend
from contentforge.personas import sample_persona

pytestmark = pytest.mark.slow


class CountingBackend(FixedLatencyBackend):
    """Sleeps like the fixed-latency backend and records the seed of every generation it runs."""

    def __init__(self, latency_s: float) -> None:
        super().__init__(latency_s)
        self.seeds: list[int] = []
        self._lock = threading.Lock()

    def generate(self, request: Any) -> Any:
        with self._lock:
            self.seeds.append(request.seed)
        return super().generate(request)


@pytest.fixture
def stage_env(settings_env: Path, prefect_server: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from tasks import resources
    from tasks.bootstrap import ensure_concurrency_limit

    settings = get_settings()
    ensure_concurrency_limit(settings.concurrency_limit_name, settings.generation_slots)
    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    backend = CountingBackend(latency_s=0.2)
    monkeypatch.setattr(resources, "image_backend", lambda: backend)
    return repo, backend


def _plan(repo: Any, batch_id: str, pieces: int) -> list[str]:
    from contentforge.batch import validate_batch_request
    from tasks import resources
    from tasks.planning import select_templates_and_prompts, take_batch

    request = validate_batch_request(
        repo,
        resources.settings(),
        persona="mia-fit",
        num_pieces=pieces,
        platform="instagram",
        tier_mix=None,
        seed=1,
    )
    take_batch.fn(request, batch_id, None, owner="test")
    return select_templates_and_prompts.fn(request, batch_id)


def test_queued_generations_run_without_their_tasks_and_are_claimed_not_repeated(stage_env) -> None:  # type: ignore[no-untyped-def]
    from contentforge.batch import GENERATED
    from flows.generate_images import generate_images
    from tasks.generation_queue import generation_queue

    repo, backend = stage_env
    piece_ids = _plan(repo, "queued-batch-0001", 4)
    keys = generation_queue().queue([[piece_id] for piece_id in piece_ids], grouped=False)
    assert keys == [(piece_id,) for piece_id in piece_ids]
    deadline = time.monotonic() + 30
    while len(backend.seeds) < 4 and time.monotonic() < deadline:  # no task run exists yet
        time.sleep(0.05)
    assert len(backend.seeds) == 4

    outcome = generate_images(batch_id="queued-batch-0001", piece_ids=piece_ids)

    assert outcome == dict.fromkeys(piece_ids, GENERATED)
    rows = repo.pieces(batch_id="queued-batch-0001")
    assert sorted(backend.seeds) == sorted(row.seed for row in rows), "each piece generated exactly once"
    assert all(row.status is PieceStatus.generated and row.storage_key for row in rows)
    assert not any(key in generation_queue() for key in keys), "claimed generations are forgotten"


def test_a_failed_queued_generation_is_retried_by_its_task(stage_env) -> None:  # type: ignore[no-untyped-def]
    from tasks.generation_queue import generation_queue
    from tasks.images import generate_image

    repo, backend = stage_env
    [piece_id] = _plan(repo, "queued-batch-0002", 1)
    real_generate = backend.generate
    calls: list[datetime] = []

    def fails_first(request: Any) -> Any:
        calls.append(datetime.now(UTC))
        if len(calls) == 1:
            raise RuntimeError("CUDA error: out of memory")
        return real_generate(request)

    backend.generate = fails_first  # type: ignore[method-assign]
    generation_queue().queue([[piece_id]], grouped=False)
    outcome = generate_image(piece_id)  # a task called outside a flow runs with its retries

    assert outcome is not None and outcome.written
    assert len(calls) == 2, "the queued attempt failed, the task's retry generated again"
    assert repo.get_piece(piece_id).status is PieceStatus.generated


def test_unclaimed_queued_generations_are_cancelled(stage_env) -> None:  # type: ignore[no-untyped-def]
    from tasks import resources
    from tasks.generation_queue import generation_queue

    repo, backend = stage_env
    piece_ids = _plan(repo, "queued-batch-0003", 12)
    blocker = threading.Event()
    slots = resources.settings().generation_slots
    # Every slot busy: high priority, so the holders take these before any generation queued below
    # (between batches of equal priority the dispatcher takes turns, not first in, first out).
    holds = [resources.dispatcher().submit(blocker.wait, priority="high") for _ in range(slots)]
    keys = generation_queue().queue([[piece_id] for piece_id in piece_ids], grouped=False)

    assert generation_queue().discard(keys) == 12
    blocker.set()
    for hold in holds:
        hold.result(timeout=30)
    time.sleep(0.5)
    assert backend.seeds == [], "cancelled before any slot started them"
    assert all(row.status is PieceStatus.planned for row in repo.pieces(batch_id="queued-batch-0003"))


def test_pieces_are_moderated_while_later_images_are_still_generating(stage_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Images after the first five wait until a moderation has begun: only pipelining lets it begin.

    Without pipelining (moderation after the last image) the gate would time out and the first
    verdict would come after the last image; no timing of the machine decides the outcome.
    """
    from flows.produce_content_batch import produce_content_batch
    from tasks import resources

    repo, backend = stage_env
    real_moderator, real_generate = resources.moderator(), backend.generate
    moderation_began = threading.Event()
    gate_opened_by_moderation: list[bool] = []
    moderated_at: list[datetime] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_moderator, name)

        def assess(self, *args: Any, **kwargs: Any) -> Any:
            moderated_at.append(datetime.now(UTC))
            moderation_began.set()
            return real_moderator.assess(*args, **kwargs)

    calls_lock, calls = threading.Lock(), [0]

    def gated(request: Any) -> Any:
        with calls_lock:
            calls[0] += 1
            later = calls[0] > 5
        if later:
            gate_opened_by_moderation.append(moderation_began.wait(timeout=60))
        return real_generate(request)

    backend.generate = gated  # type: ignore[method-assign]
    monkeypatch.setattr(resources, "moderator", lambda: Recording())
    stats = produce_content_batch(persona="mia-fit", num_pieces=15, seed=11)

    rows = repo.pieces(batch_id=stats["batch_id"])
    assert all(row.status in (PieceStatus.ready, PieceStatus.rejected) for row in rows)
    assert len(moderated_at) == 15 and len(gate_opened_by_moderation) == 10
    assert all(gate_opened_by_moderation), "no moderation began while images were still waiting"
    last_image = max(row.finished_at for row in rows if row.finished_at)
    assert min(moderated_at) < last_image
    stages = stats["stage_seconds"]
    assert {"plan", "images", "hooks", "moderation"} <= stages.keys()
    assert stages["moderation"] >= stages["images"]


def _image_charges(repo: Any, batch_id: str) -> list[tuple[str | None, str | None]]:
    from sqlalchemy import select

    from contentforge.db.models import CostEntryORM

    with repo.engine.connect() as conn:
        rows = conn.execute(
            select(CostEntryORM.piece_id, CostEntryORM.charge_key).where(
                CostEntryORM.batch_id == batch_id, CostEntryORM.kind == "image"
            )
        ).all()
    return [tuple(row) for row in rows]


def test_a_generation_whose_result_nobody_claims_is_still_charged(stage_env) -> None:  # type: ignore[no-untyped-def]
    """Issue 12: every generation that spends money is charged, even one whose result is discarded."""
    from tasks.generation_queue import generation_queue

    repo, backend = stage_env
    [piece_id] = _plan(repo, "discarded-batch-01", 1)
    keys = generation_queue().queue([[piece_id]], grouped=False)
    deadline = time.monotonic() + 30
    while not backend.seeds and time.monotonic() < deadline:  # the slot has started it
        time.sleep(0.01)
    assert generation_queue().discard(keys) == 1  # the stage ends without a task claiming it (e.g. cancelled)
    while not _image_charges(repo, "discarded-batch-01") and time.monotonic() < deadline:
        time.sleep(0.05)
    charges = _image_charges(repo, "discarded-batch-01")
    assert len(charges) == 1 and charges[0][0] == piece_id
    assert repo.get_piece(piece_id).status is PieceStatus.planned, "its image was not kept"


def test_an_image_stored_by_a_run_that_died_before_recording_it_is_adopted_not_regenerated(stage_env) -> None:  # type: ignore[no-untyped-def]
    """A crash between storing and recording: the resume records the stored image, no second generation."""
    from contentforge.batch import generate_piece, store_piece
    from tasks import resources
    from tasks.images import generate_image

    repo, backend = stage_env
    [piece_id] = _plan(repo, "adopted-batch-0001", 1)
    piece = repo.get_piece(piece_id)
    persona = repo.get_persona(piece.persona_id)
    timed = generate_piece(piece, persona, backend, resources.settings())

    class DiesBeforeRecording(RuntimeError):
        pass

    def killed(*_: Any, **__: Any) -> None:
        raise DiesBeforeRecording  # stands in for kill -9 right after storage.put

    real = repo.mark_generated
    repo.mark_generated = killed  # type: ignore[method-assign]
    with pytest.raises(DiesBeforeRecording):
        store_piece(piece, persona, timed, resources.storage(), repo, datetime.now(UTC))
    repo.mark_generated = real  # type: ignore[method-assign]
    assert repo.get_piece(piece_id).status is PieceStatus.planned
    generations_before = len(backend.seeds)

    assert generate_image.fn(piece_id) is None, "adopted: nothing generated"
    assert len(backend.seeds) == generations_before
    adopted = repo.get_piece(piece_id)
    assert adopted.status is PieceStatus.generated and adopted.storage_key
    assert _image_charges(repo, "adopted-batch-0001") == [
        (piece_id, f"image:{piece_id}:{timed.generation_id}")
    ]
