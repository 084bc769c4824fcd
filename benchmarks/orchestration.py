"""Orchestration benchmark: K simultaneous batches of N pieces behind the 5-slot limit.

Prints one JSON object with pieces, wall_s, generation_s_sum, overhead_ms_per_piece,
peak_concurrent_generations and slot_utilization, all computed from the timestamps stored on the
pieces. By default it uses the *fixed-latency* image backend (clearly labelled: it sleeps about 1 s
per image instead of running a model) because it measures orchestration, not models; pass
``--profile tiny`` to run the real tiny diffusers pipeline instead (``--batches 1 --pieces 50`` is
``make demo``'s batch).

    python benchmarks/orchestration.py                       # 3 x 50, one process per batch
    python benchmarks/orchestration.py --profile tiny --batches 1 --pieces 50   # the demo's batch
    python benchmarks/orchestration.py --sweep               # 1x50, 3x50, 10x50 and 1x500
    python benchmarks/orchestration.py --sweep --sweep-points 1x5,3x5 --latency 0.1   # a quick check
    python benchmarks/orchestration.py --mode threads        # 3 batches in one process
    python benchmarks/orchestration.py --mode deployed       # through the cpu and gpu pools and workers
    python benchmarks/orchestration.py --mode task-workers   # GPU stage on warm `contentforge gpu-worker`s

``--mode deployed`` bootstraps the pools, applies prefect.yaml, starts a cpu and a gpu process
worker (as ``contentforge up`` does) and runs the batches as deployment runs whose GPU stage is the
``generate-images`` deployment on the gpu pool. ``--mode task-workers`` runs the batches on the cpu
pool the same way, but with ``CONTENTFORGE_GPU_TASK_WORKERS``: their pieces go to ``--gpu-workers``
long-lived ``contentforge gpu-worker`` processes, started (and connected) before the clock starts as a
cluster's GPU workers are. Both report ``model_loads``: image backends built in GPU processes (one per
GPU-stage flow run when deployed; per worker, from its "model load N" log lines, with task workers).

Every point also reports the *bare loop*: the batch's own image requests (each piece's prompt,
negative prompt, seed, size, steps) generated in a plain thread pool with no orchestration, for every
way of splitting the machine's cores into concurrent generations and torch threads (a CPU pipeline)
or with every slot (other backends); ``bare_loop_wall_s`` is the fastest, ``wall_to_bare`` and
``gap_to_bare`` compare the batch with it. In processes mode each batch process also reports the
Prefect API calls and events it made (``benchmarks/instrument.py``) and its resident memory, so a
point gives API calls per piece, peak RSS and, for batches of 100 pieces or more, how much the
process grew after its 50th image. ``machine`` records the cores and the load average: on a shared
machine the figures move with it.
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
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SWEEP = "1x50,3x50,10x50,1x500"
"""The scale curve's points: simultaneous batches x pieces per batch."""


def _run_one_batch(batch_id: str, pieces: int, seed: int) -> None:
    from flows.produce_content_batch import produce_content_batch

    produce_content_batch(
        persona="mia-fit", num_pieces=pieces, platform="instagram", seed=seed, batch_id=batch_id
    )


def _warm_then_wait_for_go(sync_dir: Path, batch_id: str) -> None:
    """Import the flow and load the image backend, say so, then wait for the common start."""
    import flows.produce_content_batch  # noqa: F401  (the imports a batch process pays once)
    from tasks import resources

    backend = resources.image_backend()
    warm_up = getattr(backend, "warm_up", None)
    if callable(warm_up):  # a pipeline loads here, as the demo's process loads it before its first piece
        warm_up()
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


def _batch_requests(rows: list[Any], repo: Any, settings: Any) -> list[Any]:
    """The image requests the batch itself made: each piece's own prompt, negative prompt, seed, size."""
    from contentforge.batch import image_request_for

    personas: dict[str, Any] = {}
    for row in rows:
        if row.persona_id not in personas:
            personas[row.persona_id] = repo.get_persona(row.persona_id)
    return [image_request_for(row, personas[row.persona_id], settings) for row in rows]


def _bare_candidates(settings: Any, cores: int) -> list[tuple[int, int]]:
    """(concurrent generations, torch threads) to try: every way of splitting the cores, up to the slots.

    Threads only matter for a pipeline on CPU; other backends run with every slot (threads 0: untouched).
    """
    if settings.image_profile not in ("tiny", "model"):
        return [(settings.generation_slots, 0)]
    candidates = {(c, max(1, cores // c)) for c in range(1, min(settings.generation_slots, cores) + 1)}
    candidates |= {(1, 1), (settings.generation_slots, max(1, cores // settings.generation_slots))}
    return sorted(candidates)


def _bare_loop_seconds(requests: list[Any], settings: Any, concurrency: int, threads: int) -> float:
    """The batch's own generations in a plain loop of ``concurrency`` threads: the floor under orchestration.

    A pipeline is loaded afresh with that many replicas and ``threads`` torch threads, and warmed with
    one untimed image, as a batch process's pipeline is before its first piece.
    """
    from concurrent.futures import ThreadPoolExecutor

    from contentforge.images import pool
    from contentforge.images.factory import build_image_backend, reset_image_backends

    if threads:
        reset_image_backends()
        pool.clear()
        settings = settings.model_copy(update={"image_replicas": concurrency, "image_threads": threads})
    backend = build_image_backend(settings)
    backend.generate(requests[0])
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as executor:
        list(executor.map(backend.generate, requests))
    seconds = time.perf_counter() - started
    if threads:
        reset_image_backends()
    return seconds


def _bare_loop(requests: list[Any], settings: Any, cores: int) -> dict[str, Any]:
    """Every candidate split of the cores, timed, and the fastest: what "the machine's best" means here."""
    timed = []
    for concurrency, threads in _bare_candidates(settings, cores):
        seconds = _bare_loop_seconds(requests, settings, concurrency, threads)
        timed.append({"concurrency": concurrency, "torch_threads": threads, "wall_s": round(seconds, 3)})
    return {"best": min(timed, key=lambda entry: entry["wall_s"]), "candidates": timed}


def _machine() -> dict[str, Any]:
    """What the figures depend on: the cores, and how busy the machine already was (1-minute load)."""
    from contentforge.images.cpu_sizing import available_cores

    return {
        "cpu_count": os.cpu_count(),
        "available_cores": available_cores(),
        "loadavg": [round(value, 2) for value in os.getloadavg()],
    }


def _run_deployed(
    batch_ids: list[str], pieces: int, settings: Any, api_url: str, data_dir: Path, args: Any
) -> list[Any]:
    """Batches as deployment runs on the cpu pool; their GPU stage runs on the gpu worker."""
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
    _wait_for_pool_worker(settings.cpu_pool, "contentforge-cpu")
    try:
        return _run_batches_on_cpu_pool(batch_ids, pieces, run_dir)
    finally:
        for service in services:
            stop(run_dir, service.name)


def _wait_for_pool_worker(pool: str, name: str, timeout_s: float = 120.0) -> None:
    """Until the pool's worker ``name`` is online: a long-lived worker is started before the clock, as it
    is long before a user asks for batches (the cpu worker imports the flows before it polls)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            workers = client.read_workers_for_work_pool(work_pool_name=pool, limit=50, offset=0)
            if any(worker.name == name and worker.status == "ONLINE" for worker in workers):
                return
            time.sleep(0.5)
    raise SystemExit(f"worker {name} of pool {pool} did not come online within {timeout_s:.0f} s")


def _wait_for_batch_runs(runs: list[Any], run_dir: Path) -> None:
    """Until every batch run has ended; a batch run that did not complete ends the benchmark."""
    from prefect.client.orchestration import get_client

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


def _gpu_stage_runs(batch_runs: list[Any]) -> int:
    """How many GPU-stage flow runs the batch runs started: each is a new process that builds its model."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id for run in batch_runs])
            ),
            sort=FlowRunSort.START_TIME_ASC,
            limit=200,
        )
    return sum(child.work_pool_name is not None for child in children)


def _last_batch_run_end(batch_runs: list[Any]) -> float:
    """When the last batch flow run ended, as the Prefect server recorded it (epoch seconds)."""
    from datetime import UTC

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        ended = [client.read_flow_run(run.id).end_time for run in batch_runs]
    if any(moment is None for moment in ended):
        raise SystemExit("a batch run has no end time: it did not finish")
    return max((m if m.tzinfo else m.replace(tzinfo=UTC)).timestamp() for m in ended if m is not None)


def _batch_run_spans(batch_runs: list[Any], rows: list[Any]) -> dict[str, float]:
    """Where a deployed batch's wall time goes outside the generations: its flow-run process starting
    (created to Running, the slowest batch), and its work after the last image (hooks, moderation,
    summary) until the last batch run ended."""
    from datetime import UTC

    from prefect.client.orchestration import get_client

    def utc(moment: Any) -> Any:
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    with get_client(sync_client=True) as client:
        runs = [client.read_flow_run(run.id) for run in batch_runs]
    created = [utc(run.created) for run in runs if run.created]
    started = [utc(run.start_time) for run in runs if run.start_time]
    ended = [utc(run.end_time) for run in runs if run.end_time]
    generated = [utc(row.started_at) for row in rows if row.started_at is not None]
    finished = [utc(row.finished_at) for row in rows if row.finished_at is not None]
    spans: dict[str, float] = {}
    if created and started:
        spans["batch_run_process_start_s"] = round((max(started) - min(created)).total_seconds(), 3)
    if created and generated:
        spans["first_generation_after_s"] = round((min(generated) - min(created)).total_seconds(), 3)
    if finished and ended:
        spans["after_last_image_s"] = round((max(ended) - max(finished)).total_seconds(), 3)
    return spans


class _TaskWorkerCluster:
    """A cpu process worker whose batches send their pieces to ``count`` warm GPU workers."""

    def __init__(self, settings: Any, api_url: str, data_dir: Path, count: int) -> None:
        from contentforge_cli.gpu_worker import gpu_worker_service
        from contentforge_cli.stack import deploy_all, start, worker_services
        from tasks.bootstrap import bootstrap_cluster
        from tasks.gpu_workers import wait_for_workers

        bootstrap_cluster(settings)
        deploy_all()
        self.run_dir = data_dir / "run"
        (cpu,) = [
            s for s in worker_services(api_url, settings.cpu_pool, settings.gpu_pool, None) if "cpu" in s.name
        ]
        cpu.env.update(
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_WORKER_PREFETCH_SECONDS="10",
            CONTENTFORGE_GPU_TASK_WORKERS="true",
        )
        cpu.env.pop("CONTENTFORGE_GPU_DEPLOYMENT", None)
        self.gpu = [gpu_worker_service(api_url, f"gpu-task-worker-{n}") for n in range(1, count + 1)]
        self.services = [cpu, *self.gpu]
        for service in self.services:
            start(self.run_dir, service)
        wait_for_workers(count, timeout_s=300)
        _wait_for_pool_worker(settings.cpu_pool, "contentforge-cpu")

    def model_loads(self) -> dict[str, int]:
        return {
            service.name: (self.run_dir / f"{service.name}.log").read_text().count(": model load ")
            for service in self.gpu
        }

    def stop(self) -> None:
        from contentforge_cli.stack import stop

        for service in self.services:
            stop(self.run_dir, service.name)


def _run_batches_on_cpu_pool(batch_ids: list[str], pieces: int, run_dir: Path) -> list[Any]:
    """The batches as deployment runs on the cpu pool, until all have ended; returns the runs."""
    from prefect.deployments import run_deployment

    runs = [
        run_deployment(
            "produce-content-batch/produce-content-batch",
            parameters={"persona": "mia-fit", "num_pieces": pieces, "seed": seed, "batch_id": batch_id},
            timeout=0,
        )
        for seed, batch_id in enumerate(batch_ids)
    ]
    _wait_for_batch_runs(runs, run_dir)
    return runs


def _worker(args: Any) -> None:
    """One batch process: warm up, wait for the common start, run the batch, report its figures."""
    from benchmarks.instrument import ApiCallCounter, RssSampler, cpu_seconds, write_stats

    batch_id, pieces, seed = args.worker
    if os.environ.get("CONTENTFORGE_BENCH_TRACE"):
        _trace_dispatch(Path(os.environ["CONTENTFORGE_BENCH_TRACE"]) / f"dispatch-{batch_id[:6]}.log")
    sync_dir = Path(os.environ["CONTENTFORGE_BENCH_SYNC_DIR"])
    counter = ApiCallCounter(os.environ["PREFECT_API_URL"])
    counter.install()
    sampler = RssSampler()
    sampler.start()
    _warm_then_wait_for_go(sync_dir, batch_id)
    counter.reset()  # the batch's calls, not the warm-up's
    cpu_at_go = cpu_seconds() or 0.0
    _run_one_batch(batch_id, int(pieces), int(seed))
    (sync_dir / f"done-{batch_id}").write_text(repr(time.time()))
    cpu_s = (cpu_seconds() or 0.0) - cpu_at_go
    sampler.stop()
    write_stats(sync_dir / f"stats-{batch_id}.json", counter, sampler, cpu_s)


def _process_figures(sync_dir: Path, rows_by_batch: dict[str, list[Any]]) -> dict[str, Any]:
    """API calls and memory of the batch processes (processes mode), from what each one wrote."""
    from benchmarks.instrument import rss_growth_after

    stats = {bid: json.loads((sync_dir / f"stats-{bid}.json").read_text()) for bid in rows_by_batch}
    pieces = sum(len(rows) for rows in rows_by_batch.values())
    calls: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    events: Counter[str] = Counter()
    for entry in stats.values():
        calls.update(entry["api_calls_by_endpoint"])
        errors.update(entry.get("api_errors_by_status", {}))
        events.update(entry["events_by_name"])
    growth = []
    for batch_id, rows in rows_by_batch.items():
        finished = sorted(r.finished_at.timestamp() for r in rows if r.finished_at is not None)
        if len(finished) >= 100:  # the 50th image is early enough to say how the process grows after it
            growth.append(rss_growth_after(stats[batch_id]["rss_samples"], finished[49]))
    cpu_s = sum(entry.get("cpu_s") or 0.0 for entry in stats.values())
    return {
        "batch_processes_cpu_s": round(cpu_s, 2),
        "batch_processes_cpu_ms_per_piece": round(1000 * cpu_s / max(pieces, 1), 1),
        "api_calls": sum(calls.values()),
        "api_calls_per_piece": round(sum(calls.values()) / max(pieces, 1), 2),
        "api_calls_top": dict(calls.most_common(8)),
        "api_errors": dict(errors.most_common()),
        "events": sum(events.values()),
        "events_per_piece": round(sum(events.values()) / max(pieces, 1), 2),
        "events_top": dict(events.most_common(8)),
        "peak_rss_mb": max(entry["peak_rss_mb"] for entry in stats.values()),
        "rss_growth_mb_after_piece_50": max((g for g in growth if g is not None), default=None),
    }


def _run_point(
    args: Any, batches: int, pieces: int, settings: Any, server: Any, data_dir: Path
) -> dict[str, Any]:
    """One point: ``batches`` simultaneous batches of ``pieces``, then the bare loop on their requests."""
    from benchmarks.instrument import cpu_seconds
    from contentforge.images.cpu_sizing import available_cores, local_generation_limit
    from contentforge.metrics import concurrency_figures
    from tasks import resources

    repo = resources.repository()
    backend = resources.image_backend()
    local_limit = local_generation_limit(backend, settings.generation_slots)
    batch_ids = [uuid.uuid4().hex for _ in range(batches)]
    sync_dir = data_dir / f"sync-{batch_ids[0][:8]}"
    sync_dir.mkdir()
    workers: list[subprocess.Popen[bytes]] = []
    cluster = None
    if args.mode == "task-workers":  # warm GPU workers are long-lived: connected before the clock starts
        cluster = _TaskWorkerCluster(settings, server.api_url, data_dir, args.gpu_workers)
    if args.mode == "processes":
        # Start the batch processes first and wait until each has imported and loaded its model,
        # so the timed run measures orchestration, not Python start-up on a small machine.
        env = dict(os.environ, CONTENTFORGE_BENCH_SYNC_DIR=str(sync_dir))
        if args.trace:
            env["CONTENTFORGE_BENCH_TRACE"] = str(data_dir)
        workers = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", batch_id, str(pieces), str(seed)],
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
    server_cpu_at_go = cpu_seconds(server.pid)
    started, started_at = time.perf_counter(), time.time()
    model_loads: dict[str, int] = {}
    batch_runs: list[Any] = []
    if args.mode == "deployed":
        batch_runs = _run_deployed(batch_ids, pieces, settings, server.api_url, data_dir, args)
        model_loads = {"gpu-stage flow runs": _gpu_stage_runs(batch_runs)}
    elif cluster is not None:
        try:
            batch_runs = _run_batches_on_cpu_pool(batch_ids, pieces, cluster.run_dir)
        finally:
            model_loads = cluster.model_loads()
            cluster.stop()
    elif args.mode == "threads":
        threads = [
            threading.Thread(target=_run_one_batch, args=(batch_id, pieces, seed))
            for seed, batch_id in enumerate(batch_ids)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        codes = [worker.wait() for worker in workers]
        if any(codes):
            failure = f"a batch process failed: exit codes {codes}"
            if not args.sweep:
                raise SystemExit(failure)
            return {"batches": batches, "pieces": batches * pieces, "failed": failure}  # the sweep goes on
    exit_wall_s = time.perf_counter() - started
    server_cpu_after = cpu_seconds(server.pid)
    # Batches are done when their flows return; a process then still flushes Prefect's logs and events.
    done = [float(path.read_text()) for path in sync_dir.glob("done-*")]
    if args.mode == "processes":
        wall_s = max(done) - started_at
    elif batch_runs:
        # Deployed batches are done when their flow runs end, as the server recorded it; stopping the
        # benchmark's workers afterwards (and the 1 s poll that noticed the end) is not batch work.
        wall_s = _last_batch_run_end(batch_runs) - started_at
    else:
        wall_s = exit_wall_s

    rows_by_batch = {batch_id: repo.pieces(batch_id=batch_id) for batch_id in batch_ids}
    rows = [row for batch_rows in rows_by_batch.values() for row in batch_rows]
    figures = concurrency_figures(
        ((r.started_at, r.finished_at) for r in rows if r.started_at), settings.generation_slots
    )
    usable = min(settings.generation_slots, batches * local_limit)
    generation_s_sum = sum(r.generation_seconds or 0.0 for r in rows)
    ideal_wall = generation_s_sum / usable
    bare = _bare_loop(_batch_requests(rows, repo, settings), settings, available_cores())
    bare_s = bare["best"]["wall_s"]
    result = {
        "backend": backend.name,
        "mode": args.mode,
        "batches": batches,
        "pieces": len(rows),
        "pieces_generated": figures.pieces,
        "wall_s": round(wall_s, 3),
        "process_exit_wall_s": round(exit_wall_s, 3),
        "generation_phase_s": round(figures.phase_seconds, 3),
        "generation_s_sum": round(generation_s_sum, 3),
        "overhead_ms_per_piece": round(1000 * (wall_s - ideal_wall) / max(len(rows), 1), 1),
        "peak_concurrent_generations": figures.peak_concurrent,
        "slots": settings.generation_slots,
        "slot_utilization": round(figures.slot_utilization, 3),
        "local_generation_limit": local_limit,
        "usable_slots": usable,
        "usable_slot_utilization": round(figures.busy_seconds / (usable * figures.phase_seconds), 3)
        if figures.phase_seconds
        else 0.0,
        "batch_process_sizing": {
            "replicas": getattr(backend, "replicas", None),
            "torch_threads": getattr(backend, "cpu_threads", None),
        },
        "bare_loop_wall_s": bare_s,
        "bare_loop_best": bare["best"],
        "bare_loop_candidates": bare["candidates"],
        "wall_to_bare": round(wall_s / bare_s, 3),
        "gap_to_bare": round((wall_s - bare_s) / wall_s, 3),
        "phase_gap_to_bare": round((figures.phase_seconds - bare_s) / figures.phase_seconds, 3)
        if figures.phase_seconds
        else None,
    }
    if server_cpu_at_go is not None and server_cpu_after is not None:  # a server this run started
        server_cpu_s = server_cpu_after - server_cpu_at_go
        result["prefect_server_cpu_s"] = round(server_cpu_s, 2)
        result["prefect_server_cpu_ms_per_piece"] = round(1000 * server_cpu_s / max(len(rows), 1), 1)
    if args.mode == "processes":
        result |= _process_figures(sync_dir, rows_by_batch)
    if model_loads:
        result |= {"model_loads": sum(model_loads.values()), "model_loads_by_gpu_process": model_loads}
    if batch_runs:
        result |= _batch_run_spans(batch_runs, rows)
    return result


def _points(text: str) -> list[tuple[int, int]]:
    """``"1x50,3x50"`` -> [(1, 50), (3, 50)]: simultaneous batches x pieces per batch."""
    try:
        points = [tuple(int(n) for n in part.split("x")) for part in text.split(",")]
    except ValueError:
        points = []
    if not points or any(len(p) != 2 or min(p) < 1 for p in points):
        raise SystemExit(f"--sweep-points: expected BATCHESxPIECES[,…] such as 1x50,3x50; got {text!r}")
    return [(p[0], p[1]) for p in points]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--pieces", type=int, default=50)
    parser.add_argument(
        "--latency", type=float, default=1.0, help="seconds per image (fixed-latency backend)"
    )
    parser.add_argument("--profile", choices=["fixed-latency", "tiny"], default="fixed-latency")
    parser.add_argument(
        "--mode", choices=["processes", "threads", "deployed", "task-workers"], default="processes"
    )
    parser.add_argument("--gpu-workers", type=int, default=1, help="warm GPU workers (--mode task-workers)")
    parser.add_argument(
        "--sweep", action="store_true", help=f"measure every point of --sweep-points (default {SWEEP})"
    )
    parser.add_argument("--sweep-points", default=SWEEP, help="BATCHESxPIECES,… for --sweep")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a fresh temporary directory")
    parser.add_argument(
        "--prefect-db-url",
        help="run a Prefect server on this database (postgresql+asyncpg://…) on port 4210 instead of SQLite",
    )
    parser.add_argument(
        "--prefect-port", type=int, default=4210, help="port of the --prefect-db-url server (default 4210)"
    )
    parser.add_argument("--trace", action="store_true", help="log slot grants per batch into DATA_DIR")
    parser.add_argument("--worker", nargs=3, metavar=("BATCH_ID", "PIECES", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        _worker(args)
        return
    points = _points(args.sweep_points) if args.sweep else [(args.batches, args.pieces)]
    if any(pieces > 500 for _, pieces in points):
        raise SystemExit("a batch has at most 500 pieces")

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="contentforge-bench-"))
    os.environ.update(
        CONTENTFORGE_DATA_DIR=str(data_dir),
        CONTENTFORGE_IMAGE_PROFILE=args.profile,
        CONTENTFORGE_FIXED_LATENCY_S=str(args.latency),
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    if args.prefect_db_url:  # its own port, so a running SQLite server is never reused by mistake
        os.environ["CONTENTFORGE_PREFECT_DATABASE_URL"] = args.prefect_db_url
        os.environ["CONTENTFORGE_PREFECT_PORT"] = str(args.prefect_port)
    from contentforge.config import get_settings
    from contentforge.personas import sample_persona
    from contentforge_cli.runtime import connect

    settings = get_settings()
    machine_before = _machine()
    server = connect(settings)  # reuses the running local server on prefect_port, or starts one
    from tasks import resources
    from tasks.bootstrap import ensure_concurrency_limit

    try:
        ensure_concurrency_limit(settings.concurrency_limit_name, settings.generation_slots)
        resources.repository().upsert_persona(sample_persona())
        results = [_run_point(args, n, pieces, settings, server, data_dir) for n, pieces in points]
    finally:
        # A server this run started is stopped: left running, each took 2-6 % of a core (eleven after a
        # session of runs), which skewed every later measurement on the same machine.
        if server.started:
            from contentforge_cli.server import stop_server

            stop_server(settings.prefect_home)
    common = {
        "machine": machine_before,
        "loadavg_after": [round(value, 2) for value in os.getloadavg()],
        "prefect_database": "postgresql" if settings.prefect_database_url else "sqlite",
        "prefect_api": server.api_url,
        "latency_s": args.latency if args.profile == "fixed-latency" else None,
    }
    if args.sweep:
        print(json.dumps(common | {"sweep": results}))
    else:
        print(json.dumps(common | results[0]))


if __name__ == "__main__":
    main()
