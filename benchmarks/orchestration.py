"""Orchestration benchmark: K simultaneous batches of N pieces behind the 5-slot limit.

Prints one JSON object with pieces, wall_s, generation_s_sum, overhead_ms_per_piece,
peak_concurrent_generations and slot_utilization, all computed from the timestamps stored on the
pieces. By default it uses the *fixed-latency* image backend (clearly labelled: it sleeps about 1 s
per image instead of running a model) because it measures orchestration, not models; pass
``--profile tiny`` to run the real tiny diffusers pipeline instead.

    python benchmarks/orchestration.py                       # 3 x 50, one process per batch
    python benchmarks/orchestration.py --mode threads        # 3 batches in one process
    python benchmarks/orchestration.py --batches 1 --pieces 50
    python benchmarks/orchestration.py --mode deployed       # through the cpu and gpu pools and workers

``--mode deployed`` bootstraps the pools, applies prefect.yaml, starts a cpu and a gpu process
worker (as ``contentforge up`` does) and runs the batches as deployment runs whose GPU stage is the
``generate-images`` deployment on the gpu pool. Every mode also reports ``bare_loop_wall_s``: the
same generations in a plain Python loop of 5 threads with no orchestration, and ``gap_to_bare``,
the share of the wall time the orchestration adds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _run_one_batch(batch_id: str, pieces: int, seed: int) -> None:
    from flows.produce_content_batch import produce_content_batch

    produce_content_batch(
        persona="mia-fit", num_pieces=pieces, platform="instagram", seed=seed, batch_id=batch_id
    )


def _warm_then_wait_for_go(sync_dir: Path, batch_id: str) -> None:
    """Import the flow and load the image backend, say so, then wait for the common start."""
    import flows.produce_content_batch  # noqa: F401  (the imports a batch process pays once)
    from tasks import resources

    resources.image_backend()
    resources.repository()
    (sync_dir / f"ready-{batch_id}").touch()
    while not (sync_dir / "go").exists():
        time.sleep(0.05)


def _trace_dispatch(path: Path) -> None:
    """Log the slot dispatcher's grants, refusals and releases with wall-clock times (``--trace``)."""
    import logging

    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(created).3f %(threadName)s %(message)s"))
    dispatch_logger = logging.getLogger("tasks.dispatch")
    dispatch_logger.setLevel(logging.DEBUG)
    dispatch_logger.addHandler(handler)


def _bare_loop_seconds(count: int, backend: Any, threads: int) -> float:
    """The same generations in a plain loop of ``threads`` threads: the floor orchestration adds to."""
    from concurrent.futures import ThreadPoolExecutor

    from contentforge.images.protocol import ImageRequest

    def one(seed: int) -> None:
        backend.generate(
            ImageRequest(prompt="bare loop", seed=seed, steps=4, guidance_scale=5.0, width=128, height=128)
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - started


def _run_deployed(
    batch_ids: list[str], pieces: int, settings: Any, api_url: str, data_dir: Path, args: Any
) -> None:
    """Batches as deployment runs on the cpu pool; their GPU stage runs on the gpu worker."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from contentforge_cli.stack import deploy_all, start, stop, worker_services
    from tasks.bootstrap import bootstrap_cluster

    bootstrap_cluster(settings)
    deploy_all()
    run_dir = data_dir / "run"
    services = worker_services(
        api_url, settings.cpu_pool, settings.gpu_pool, "generate-images/generate-images"
    )
    for service in services:
        service.env.update(PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="10")
        start(run_dir, service)
    try:
        runs = [
            run_deployment(
                "produce-content-batch/produce-content-batch",
                parameters={"persona": "mia-fit", "num_pieces": pieces, "seed": seed, "batch_id": batch_id},
                timeout=0,
            )
            for seed, batch_id in enumerate(batch_ids)
        ]
        with get_client(sync_client=True) as client:
            pending = {run.id for run in runs}
            while pending:
                time.sleep(1)
                for run_id in list(pending):
                    state = client.read_flow_run(run_id).state
                    if state is not None and state.is_final():
                        if not state.is_completed():
                            raise SystemExit(f"batch run {run_id} ended {state.name}; logs in {run_dir}")
                        pending.discard(run_id)
    finally:
        for service in services:
            stop(run_dir, service.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--pieces", type=int, default=50)
    parser.add_argument(
        "--latency", type=float, default=1.0, help="seconds per image (fixed-latency backend)"
    )
    parser.add_argument("--profile", choices=["fixed-latency", "tiny"], default="fixed-latency")
    parser.add_argument("--mode", choices=["processes", "threads", "deployed"], default="processes")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a fresh temporary directory")
    parser.add_argument(
        "--prefect-db-url",
        help="run a Prefect server on this database (postgresql+asyncpg://…) on port 4210 instead of SQLite",
    )
    parser.add_argument("--trace", action="store_true", help="log slot grants per batch into DATA_DIR")
    parser.add_argument("--worker", nargs=3, metavar=("BATCH_ID", "PIECES", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        batch_id, pieces, seed = args.worker
        if os.environ.get("CONTENTFORGE_BENCH_TRACE"):
            _trace_dispatch(Path(os.environ["CONTENTFORGE_BENCH_TRACE"]) / f"dispatch-{batch_id[:6]}.log")
        sync_dir = Path(os.environ["CONTENTFORGE_BENCH_SYNC_DIR"])
        _warm_then_wait_for_go(sync_dir, batch_id)
        _run_one_batch(batch_id, int(pieces), int(seed))
        (sync_dir / f"done-{batch_id}").write_text(repr(time.time()))
        return

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="contentforge-bench-"))
    os.environ.update(
        CONTENTFORGE_DATA_DIR=str(data_dir),
        CONTENTFORGE_IMAGE_PROFILE=args.profile,
        CONTENTFORGE_FIXED_LATENCY_S=str(args.latency),
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    if args.prefect_db_url:  # its own port, so a running SQLite server is never reused by mistake
        os.environ["CONTENTFORGE_PREFECT_DATABASE_URL"] = args.prefect_db_url
        os.environ["CONTENTFORGE_PREFECT_PORT"] = "4210"
    from contentforge.config import get_settings
    from contentforge.metrics import concurrency_figures
    from contentforge.personas import sample_persona
    from contentforge_cli.runtime import connect

    settings = get_settings()
    server = connect(settings)  # reuses the running local server on prefect_port, or starts one
    from tasks import resources
    from tasks.bootstrap import ensure_concurrency_limit

    ensure_concurrency_limit(settings.concurrency_limit_name, settings.generation_slots)
    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    resources.image_backend()  # load once before timing (the demo process also loads it once)

    batch_ids = [uuid.uuid4().hex for _ in range(args.batches)]
    workers: list[subprocess.Popen[bytes]] = []
    if args.mode == "processes":
        # Start the batch processes first and wait until each has imported and loaded its model,
        # so the timed run measures orchestration, not Python start-up on a small machine.
        sync_dir = data_dir / "sync"
        sync_dir.mkdir(exist_ok=True)
        env = dict(os.environ, CONTENTFORGE_BENCH_SYNC_DIR=str(sync_dir))
        if args.trace:
            env["CONTENTFORGE_BENCH_TRACE"] = str(data_dir)
        workers = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", batch_id, str(args.pieces), str(seed)],
                env=env,
                stdout=subprocess.DEVNULL,
            )
            for seed, batch_id in enumerate(batch_ids)
        ]
        while len(list(sync_dir.glob("ready-*"))) < len(workers):
            if any(worker.poll() is not None for worker in workers):
                raise SystemExit("a batch process exited before it was ready")
            time.sleep(0.1)
        (sync_dir / "go").touch()
    started, started_at = time.perf_counter(), time.time()
    if args.mode == "deployed":
        _run_deployed(batch_ids, args.pieces, settings, server.api_url, data_dir, args)
    elif args.mode == "threads":
        threads = [
            threading.Thread(target=_run_one_batch, args=(batch_id, args.pieces, seed))
            for seed, batch_id in enumerate(batch_ids)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        codes = [worker.wait() for worker in workers]
        if any(codes):
            raise SystemExit(f"a batch process failed: exit codes {codes}")
    exit_wall_s = time.perf_counter() - started
    # Batches are done when their flows return; a process then still flushes Prefect's logs and events.
    done = [float(path.read_text()) for path in (data_dir / "sync").glob("done-*")]
    wall_s = max(done) - started_at if args.mode == "processes" else exit_wall_s

    rows = [row for batch_id in batch_ids for row in repo.pieces(batch_id=batch_id)]
    bare = _bare_loop_seconds(len(rows), resources.image_backend(), settings.generation_slots)
    figures = concurrency_figures(
        ((r.started_at, r.finished_at) for r in rows if r.started_at), settings.generation_slots
    )
    generation_s_sum = sum(r.generation_seconds or 0.0 for r in rows)
    ideal_wall = generation_s_sum / settings.generation_slots
    print(
        json.dumps(
            {
                "backend": resources.image_backend().name,
                "mode": args.mode,
                "batches": args.batches,
                "pieces": len(rows),
                "pieces_generated": figures.pieces,
                "wall_s": round(wall_s, 3),
                "process_exit_wall_s": round(exit_wall_s, 3),
                "generation_phase_s": round(figures.phase_seconds, 3),
                "generation_s_sum": round(generation_s_sum, 3),
                "overhead_ms_per_piece": round(1000 * (wall_s - ideal_wall) / max(len(rows), 1), 1),
                "peak_concurrent_generations": figures.peak_concurrent,
                "slot_utilization": round(figures.slot_utilization, 3),
                "slots": settings.generation_slots,
                "bare_loop_wall_s": round(bare, 3),
                "gap_to_bare": round((wall_s - bare) / wall_s, 3),
                "phase_gap_to_bare": round((figures.phase_seconds - bare) / figures.phase_seconds, 3),
                "prefect_database": "postgresql" if settings.prefect_database_url else "sqlite",
                "prefect_api": server.api_url,
            }
        )
    )


if __name__ == "__main__":
    main()
