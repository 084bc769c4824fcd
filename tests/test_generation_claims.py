"""Generation claims (issue 18, item 1): of the processes sent the same piece, exactly one generates it.

The store (``contentforge.db.generation_claims``) on SQLite and PostgreSQL: a claim is exclusive while
its lease lives, is taken over once it expired, is renewed and released by its token only. Then the
warm GPU worker's run (``tasks/gpu_workers.generate_pieces_on_gpu``) in threads of this process, each
thread one "worker", with a slow fixed-latency backend that records every generation: two runs sent
the same pieces at once, a run sent pieces a dead claimant held, and a resume's run sent pieces the
cancelled batch's run still generates. Each piece is generated once and stored once. The slots are the
session Prefect server's global concurrency limit, as in every generating process.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from contentforge.config import get_settings
from contentforge.db import Repository
from contentforge.db.generation_claims import ClaimKeeper, GenerationClaims
from contentforge.images.fixed_latency import FixedLatencyBackend
from contentforge.personas import sample_persona

LATENCY_S = 0.5
CLAIM_S = 2.0


# --- the store, on both databases -------------------------------------------------------------------


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


def _pieces(engine: Engine, count: int) -> list[str]:
    """``count`` planned pieces of one batch, straight through the repository."""
    from contentforge.db import PlannedPiece

    repo = Repository(engine)
    persona = sample_persona()
    repo.upsert_persona(persona)
    repo.create_batch(
        batch_id="claims-batch",
        persona_id=persona.id,
        platform="instagram",
        num_pieces=count,
        tier_mix={"standard": 1.0},
        seed=1,
        params={},
        flow_run_id=None,
    )
    planned = [PlannedPiece(f"claims-piece-{i}", i, "t", "standard", f"p{i}", "", i) for i in range(count)]
    repo.add_planned_pieces("claims-batch", planned)
    return [piece.piece_id for piece in planned]


def test_a_live_claim_is_exclusive_renewed_released_and_taken_over_once_expired(engine: Engine) -> None:
    claims = GenerationClaims(engine)
    a, b, c, d = _pieces(engine, 4)
    assert claims.claim([a, b], "worker A", "token-a", lease_s=60) == {a, b}
    assert claims.claim([a, b, c], "worker B", "token-b", lease_s=60) == {c}, "a live claim is A's"
    assert claims.claim([a], "worker A", "token-a", lease_s=60) == {a}, "its own claim is still its"
    assert set(claims.holders([a, b, c, d])) == {a, b, c} and claims.holders([a])[a].owner == "worker A"

    assert claims.renew(["token-a", "token-b", "token-gone"], lease_s=60) == {
        "token-a": {a, b},
        "token-b": {c},
        "token-gone": set(),
    }
    assert claims.release("token-b", [a]) == 0, "a token never releases another's claim"
    assert claims.release("token-a", [a]) == 1
    assert claims.claim([a, b], "worker B", "token-b", lease_s=60) == {a}

    # A claimant that stops renewing: its claim on d runs out and the next claimant takes it over.
    assert claims.claim([d], "worker C", "token-c", lease_s=0.5) == {d}
    assert claims.claim([d], "worker B", "token-b", lease_s=60) == set()
    time.sleep(0.7)
    assert d not in claims.holders([d]), "an expired claim is nobody's"
    assert claims.claim([d], "worker B", "token-b", lease_s=60) == {d}
    assert claims.renew(["token-c"], lease_s=60) == {"token-c": set()}, (
        "the stalled claimant learns it lost d"
    )


def test_of_many_claimants_at_once_each_piece_goes_to_exactly_one(engine: Engine) -> None:
    claims = GenerationClaims(engine)
    pieces = _pieces(engine, 6)
    won: dict[str, set[str]] = {}
    barrier = threading.Barrier(6)

    def claimant(name: str) -> None:
        barrier.wait()
        won[name] = claims.claim(pieces, name, name, lease_s=60)

    threads = [threading.Thread(target=claimant, args=(f"t{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    owners = Counter(piece for got in won.values() for piece in got)
    assert set(owners) == set(pieces) and set(owners.values()) == {1}, won


def test_a_keeper_renews_its_claims_and_notices_one_taken_over(engine: Engine) -> None:
    claims = GenerationClaims(engine)
    a, b = _pieces(engine, 2)
    keeper = ClaimKeeper(claims, lease_s=0.6)
    claim = keeper.claim("worker A", [a, b])
    assert claim.held == {a, b}
    time.sleep(1.5)  # more than two leases: only the renewal thread keeps them
    assert claims.claim([a, b], "worker B", "token-b", lease_s=60) == set(), "still A's: renewed"
    # A stalled past its lease and B took a over: A's next renewal notices.
    claims.release(claim.token, [a])
    assert claims.claim([a], "worker B", "token-b", lease_s=60) == {a}
    keeper.renew_now()
    assert claim.lost == {a} and claim.held == {b}
    keeper.release(claim)
    assert claims.holders([b]) == {}


def test_a_claim_whose_take_fails_is_not_renewed_for_ever(engine: Engine) -> None:
    """A take that raises (the database refused it) leaves no token in the keeper: nobody would release
    it, and the renewal thread would renew it for the worker's whole life (review finding)."""

    class Refusing(GenerationClaims):
        def claim(self, piece_ids: Any, owner: str, token: str, lease_s: float) -> set[str]:
            raise RuntimeError("database refused the claim")

    keeper = ClaimKeeper(Refusing(engine), lease_s=0.6)
    with pytest.raises(RuntimeError, match="refused"):
        keeper.claim("worker A", _pieces(engine, 1))
    assert keeper._open == {}, "the failed claim's token is not kept for renewal"


# --- warm GPU worker runs, two at a time ------------------------------------------------------------


class CountingBackend(FixedLatencyBackend):
    """Sleeps like the fixed-latency backend and counts each seed's generations."""

    def __init__(self, latency_s: float) -> None:
        super().__init__(latency_s)
        self.generated: Counter[int] = Counter()
        self.started_at: dict[int, float] = {}
        self._lock = threading.Lock()

    def generate(self, request: Any) -> Any:
        with self._lock:
            self.generated[request.seed] += 1
            self.started_at.setdefault(request.seed, time.monotonic())
        return super().generate(request)


@pytest.fixture
def worker_env(settings_env: Path, prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from tasks import resources
    from tasks.bootstrap import ensure_concurrency_limit

    monkeypatch.setenv("CONTENTFORGE_GENERATION_CLAIM_S", str(CLAIM_S))
    get_settings.cache_clear()
    settings = get_settings()
    ensure_concurrency_limit(settings.concurrency_limit_name, settings.generation_slots)
    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    backend = CountingBackend(LATENCY_S)
    monkeypatch.setattr(resources, "image_backend", lambda: backend)
    return {"repo": repo, "backend": backend}


def _plan(batch_id: str, pieces: int, seed: int) -> list[str]:
    from contentforge.batch import validate_batch_request
    from tasks import resources
    from tasks.planning import select_templates_and_prompts, take_batch

    request = validate_batch_request(
        resources.repository(),
        resources.settings(),
        persona="mia-fit",
        num_pieces=pieces,
        platform="instagram",
        tier_mix=None,
        seed=seed,
    )
    take_batch.fn(request, batch_id, None, owner="test")
    return select_templates_and_prompts.fn(request, batch_id)


def _seeds(piece_ids: list[str]) -> dict[str, int]:
    from contentforge.batch import image_request_for
    from tasks import resources
    from tasks.planning import load_piece

    persona = resources.repository().get_persona("mia-fit")
    return {p: image_request_for(load_piece(p), persona, resources.settings()).seed for p in piece_ids}


def _run_worker(batch_id: str, piece_ids: list[str], results: dict[str, Any], name: str) -> threading.Thread:
    """One "worker": the served run's body in a thread (no Prefect task run, so no run logger)."""
    from prefect.logging import disable_run_logger

    from tasks.gpu_workers import generate_pieces_on_gpu

    def body() -> None:
        try:
            with disable_run_logger():
                results[name] = generate_pieces_on_gpu.fn(batch_id, piece_ids, len(piece_ids))
        except BaseException as exc:  # reported by the test's assertions
            results[name] = exc

    thread = threading.Thread(target=body, name=name)
    thread.start()
    return thread


def _assert_each_generated_and_stored_once(env: dict[str, Any], batch_id: str, piece_ids: list[str]) -> None:
    seeds = _seeds(piece_ids)
    assert len(set(seeds.values())) == len(piece_ids), "each piece has a seed of its own"
    generated = env["backend"].generated
    assert {piece: generated[seed] for piece, seed in seeds.items()} == dict.fromkeys(piece_ids, 1), generated
    rows = env["repo"].pieces(batch_id=batch_id)
    assert all(row.storage_key for row in rows), [(row.id, row.status) for row in rows]
    files = [path for path in Path(get_settings().data_dir).rglob("*.png") if path.stem in set(piece_ids)]
    assert len(files) == len(piece_ids), files
    assert GenerationClaims(env["repo"].sessions).holders(piece_ids) == {}, "every claim released"


def test_two_workers_sent_the_same_pieces_at_once_generate_each_piece_once(
    worker_env: dict[str, Any],
) -> None:
    piece_ids = _plan("claims-same-01", 4, seed=11)
    results: dict[str, Any] = {}
    threads = [_run_worker("claims-same-01", piece_ids, results, name) for name in ("a", "b")]
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert all(isinstance(result, dict) for result in results.values()), results
    _assert_each_generated_and_stored_once(worker_env, "claims-same-01", piece_ids)
    # Between them the two runs generated each piece once and skipped it once.
    total = Counter(results["a"]) + Counter(results["b"])
    assert total == Counter({"generated": 4, "skipped": 4}), results


def test_a_dead_claimants_pieces_are_taken_over_after_its_lease_and_generated_once(
    worker_env: dict[str, Any],
) -> None:
    piece_ids = _plan("claims-dead-01", 3, seed=12)
    claims = GenerationClaims(worker_env["repo"].sessions)
    # A worker that claimed the pieces and died (kill -9): nobody renews its claims.
    assert claims.claim(piece_ids, "dead worker", uuid.uuid4().hex, lease_s=CLAIM_S) == set(piece_ids)
    expires = max(holder.expires_at for holder in claims.holders(piece_ids).values())
    expires_in = (expires - expires.now(expires.tzinfo)).total_seconds()
    claimed_at = time.monotonic()
    results: dict[str, Any] = {}
    _run_worker("claims-dead-01", piece_ids, results, "b").join(timeout=120)
    assert results["b"] == {"generated": 3}, results
    first_start = min(worker_env["backend"].started_at.values())
    assert first_start - claimed_at >= expires_in - 0.2, "nothing generated while the dead claim was live"
    _assert_each_generated_and_stored_once(worker_env, "claims-dead-01", piece_ids)


def test_a_resumes_run_waits_for_the_cancelled_runs_generation_instead_of_generating_again(
    worker_env: dict[str, Any],
) -> None:
    from tasks.gpu_workers import worker_id

    batch_id = "claims-resume-1"
    piece_ids = _plan(batch_id, 3, seed=13)
    repo, backend = worker_env["repo"], worker_env["backend"]
    results: dict[str, Any] = {}
    first = _run_worker(batch_id, piece_ids, results, "cancelled run")
    deadline = time.monotonic() + 60
    while not backend.generated:  # the cancelled batch's run is generating
        assert time.monotonic() < deadline and first.is_alive(), results
        time.sleep(0.02)
    # The batch is cancelled (its planned pieces read cancelled) and resumed (planned again) at once.
    assert repo.end_batch_run(batch_id, "cancelled")
    repo.acquire_batch_lease(batch_id, f"resume {worker_id()}", ttl_s=60)
    second = _run_worker(batch_id, piece_ids, results, "resume's run")
    first.join(timeout=120)
    second.join(timeout=120)
    assert isinstance(results["cancelled run"], dict), results
    assert isinstance(results["resume's run"], dict), results
    _assert_each_generated_and_stored_once(worker_env, batch_id, piece_ids)
    assert results["resume's run"].get("generated", 0) == 0, results


def test_a_waiting_run_stops_with_its_batch_and_gives_up_on_a_claimant_that_never_finishes(
    worker_env: dict[str, Any],
) -> None:
    from prefect.logging import disable_run_logger

    from tasks.generation_queue import BatchStopped, generation_queue
    from tasks.gpu_workers import PiecesClaimedElsewhere, await_claimed_pieces, claim_keeper

    piece_ids = _plan("claims-wait-01", 2, seed=14)
    keeper = claim_keeper()
    holder = keeper.claim("live worker", piece_ids)  # renewed: it never expires while the test runs
    waiter = keeper.claim("waiting run", piece_ids)
    assert waiter.held == set()
    try:
        with disable_run_logger(), pytest.raises(PiecesClaimedElsewhere, match="live worker"):
            await_claimed_pieces(
                keeper, waiter, piece_ids, "claims-wait-01", poll_s=0.1, max_wait_s=2 * CLAIM_S
            )
        generation_queue().stop("claims-wait-01")
        started = time.monotonic()
        with pytest.raises(BatchStopped):
            await_claimed_pieces(keeper, waiter, piece_ids, "claims-wait-01", poll_s=0.1)
        assert time.monotonic() - started < CLAIM_S, "the stop is seen at the next poll"
    finally:
        generation_queue().resume("claims-wait-01")
        keeper.release(holder)
        keeper.release(waiter)
    assert worker_env["backend"].generated == Counter(), "nothing generated while waiting"
