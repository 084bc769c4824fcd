"""Stopping a batch's generations in its process (issue 14, item 2), without a worker.

``GenerationQueue.stop(batch_id)`` is what a cancelled batch run calls within a second of being
Cancelling: its generations still waiting for a slot are dropped, any later claim of that batch is
refused (so no task generates a dropped piece afresh), the slots go back to the server at once, and
a generation already running finishes and is still claimable (it was paid for; the resume keeps it).
``stop_when_cancelled`` is the watcher that calls it: it reads the run's state once a second.

Against the session's real Prefect server (the slots are its global concurrency limit), with the
labelled fixed-latency backend, so a generation takes a known time and no model runs.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from contentforge.config import get_settings
from contentforge.images.fixed_latency import FixedLatencyBackend
from contentforge.personas import sample_persona

LATENCY_S = 1.0


class StartRecordingBackend(FixedLatencyBackend):
    """Sleeps like the fixed-latency backend and records the seed and start time of every generation."""

    def __init__(self, latency_s: float) -> None:
        super().__init__(latency_s)
        self.started: list[tuple[int, float]] = []
        self._lock = threading.Lock()

    def generate(self, request: Any) -> Any:
        with self._lock:
            self.started.append((request.seed, time.monotonic()))
        return super().generate(request)


@pytest.fixture
def stop_env(settings_env: Path, prefect_server: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from tasks import resources
    from tasks.bootstrap import ensure_concurrency_limit

    settings = get_settings()
    ensure_concurrency_limit(settings.concurrency_limit_name, settings.generation_slots)
    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    backend = StartRecordingBackend(LATENCY_S)
    monkeypatch.setattr(resources, "image_backend", lambda: backend)
    return repo, backend


def _plan(repo: Any, batch_id: str, pieces: int, seed: int) -> list[str]:
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
        seed=seed,
    )
    take_batch.fn(request, batch_id, None, owner="test")
    return select_templates_and_prompts.fn(request, batch_id)


def _seeds(repo: Any, piece_ids: list[str]) -> dict[int, str]:
    from contentforge.batch import image_request_for
    from tasks import resources
    from tasks.planning import load_piece

    persona = repo.get_persona("mia-fit")
    return {image_request_for(load_piece(p), persona, resources.settings()).seed: p for p in piece_ids}


def _active_slots() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(get_settings().concurrency_limit_name)
        return int(limit.active_slots)


def test_stop_drops_queued_generations_refuses_later_claims_and_frees_the_slots(stop_env) -> None:  # type: ignore[no-untyped-def]
    from tasks.generation_queue import BatchStopped, generation_queue, image_work, personas_of
    from tasks.planning import load_piece

    repo, backend = stop_env
    slots = get_settings().generation_slots
    stopped_ids = _plan(repo, "stopped-batch-01", 3 * slots, seed=3)
    other_ids = _plan(repo, "other-batch-0001", 2, seed=4)
    seeds = _seeds(repo, stopped_ids) | _seeds(repo, other_ids)
    assert len(seeds) == len(stopped_ids) + len(other_ids), "each piece has its own seed"
    queue = generation_queue()
    queue.queue([[p] for p in stopped_ids], grouped=False, share="stopped-batch-01")
    queue.queue([[p] for p in other_ids], grouped=False, share="other-batch-0001")

    deadline = time.monotonic() + 60
    while len(backend.started) < slots:  # every slot is generating
        assert time.monotonic() < deadline, "the slots never filled"
        time.sleep(0.05)
    cancelled = queue.stop("stopped-batch-01")
    at_stop = time.monotonic()
    running = {seeds[seed] for seed, _ in backend.started}
    assert cancelled == len(set(stopped_ids) - running), "every generation not yet started was dropped"

    # A dropped piece's task is refused at once, instead of generating it afresh.
    dropped = next(p for p in stopped_ids if p not in running)
    piece = load_piece(dropped)
    asked = time.monotonic()
    with pytest.raises(BatchStopped):
        queue.claim_or_run((dropped,), image_work(piece, personas_of([piece])), share=piece.batch_id)
    assert time.monotonic() - asked < LATENCY_S / 2, "refused without waiting for a slot"
    assert queue.queue([[dropped]], grouped=False, share="stopped-batch-01") == [], "nor queued again"

    # A generation running at the stop finishes and its task still gets it (the resume keeps it).
    started_stopped = [p for p in stopped_ids if p in running]
    if started_stopped:
        piece = load_piece(started_stopped[0])
        image, _ = queue.claim_or_run(
            (piece.id,), image_work(piece, personas_of([piece])), share=piece.batch_id
        )
        assert image.generated.image is not None
    # The other batch is not stopped: its pieces are all generated.
    for piece_id in other_ids:
        piece = load_piece(piece_id)
        image, _ = queue.claim_or_run(
            (piece_id,), image_work(piece, personas_of([piece])), share=piece.batch_id
        )
        assert image.generated.image is not None

    deadline = time.monotonic() + 2 * LATENCY_S + 10
    while _active_slots() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _active_slots() == 0, "the slots went back to the server"
    late = [seeds[seed] for seed, when in backend.started if when > at_stop and seeds[seed] in stopped_ids]
    assert late == [], f"no generation of the stopped batch started after the stop: {late}"
    assert len({seeds[s] for s, _ in backend.started} & set(stopped_ids)) == len(running & set(stopped_ids))

    queue.resume("stopped-batch-01")  # a new run of the batch in this process may generate again
    assert not queue.stopped("stopped-batch-01")
    piece = load_piece(dropped)
    image, _ = queue.claim_or_run((dropped,), image_work(piece, personas_of([piece])), share=piece.batch_id)
    assert image.generated.image is not None


def test_the_watcher_stops_the_batch_once_its_run_is_cancelling(stop_env) -> None:  # type: ignore[no-untyped-def]
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling, Running

    from tasks.generation_queue import generation_queue, stop_when_cancelled

    @flow(name="cancel-watch-probe")
    def probe() -> None:
        pass

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(probe, state=Running())
        with stop_when_cancelled(run.id, "watched-batch-01", new_run=True, interval_s=0.2) as stopped:
            time.sleep(0.6)
            assert not stopped.is_set() and not generation_queue().stopped("watched-batch-01")
            client.set_flow_run_state(run.id, Cancelling(), force=True)
            assert stopped.wait(5), "the watcher saw the Cancelling state"
        assert generation_queue().stopped("watched-batch-01")
    generation_queue().resume("watched-batch-01")


def test_a_stopped_batch_is_not_retried() -> None:
    from prefect.states import Failed

    from contentforge.errors import InvalidInput
    from tasks.generation_queue import BatchStopped
    from tasks.images import retry_unless_invalid_input

    def failed_with(exc: Exception) -> Any:
        return Failed(data=exc)

    assert retry_unless_invalid_input(None, None, failed_with(RuntimeError("flaky"))) is True  # type: ignore[arg-type]
    assert retry_unless_invalid_input(None, None, failed_with(BatchStopped("cancelled"))) is False  # type: ignore[arg-type]
    assert retry_unless_invalid_input(None, None, failed_with(InvalidInput("bad LoRA"))) is False  # type: ignore[arg-type]


def test_the_watcher_works_inside_a_flow_run(stop_env) -> None:  # type: ignore[no-untyped-def]
    """In a flow run's process the watcher thread must reach the API with the run's settings."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run
    from prefect.states import Cancelling

    from tasks.generation_queue import stop_when_cancelled

    seen: list[bool] = []

    @flow(name="cancel-watch-inside")
    def inside() -> None:
        with stop_when_cancelled(flow_run.get_id(), "inside-batch-001", interval_s=0.2) as stopped:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(flow_run.get_id(), Cancelling(), force=True)
            seen.append(stopped.wait(5))

    inside(return_state=True)  # it stays Cancelling: only Cancelled may follow, which its worker would set
    assert seen == [True]
