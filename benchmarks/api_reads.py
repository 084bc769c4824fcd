"""Read latency of the API on a large database: p50/p95 per endpoint under concurrent clients.

Serves the real API (``contentforge_api.app.create_app`` under uvicorn, loopback only) in a child
process on a database seeded by ``benchmarks/seed_pieces.py``, and measures from this process with
``--clients`` concurrent clients (asyncio + httpx), each request timed from send to the last byte:

- ``list``: ``GET /api/v1/personas/{id}/content?limit=50&offset=…`` (random pages of a persona);
- ``stats``: ``GET /api/v1/personas/{id}/stats``;
- ``batch``: ``GET /api/v1/batches/{id}``; ``batch_pieces``: ``GET /api/v1/batches/{id}/pieces``;
- ``gallery``: what the review gallery loads for a batch, as ``gallery.js`` asks for it: the page
  (``GET /gallery/batches/{id}``), then the batch with its pieces (``GET /api/v1/batches/{id}/gallery``).

The API's own cost per request is measured the same way as a floor (reported under ``floor``, not
held to the target): ``health`` (``GET /api/v1/health``: no token, no database) and ``persona``
(``GET /api/v1/personas/{id}``: the token checked, one row read).

    python benchmarks/seed_pieces.py                  # 100k pieces into contentforge_bench (once)
    python benchmarks/api_reads.py                    # 8 clients, 200 requests per endpoint
    python benchmarks/api_reads.py --clients 8 --requests 400 --database-url postgresql+psycopg://…
    python benchmarks/api_reads.py --workers 2        # served as `contentforge api serve --workers 2`

Prints one JSON object with the percentiles in milliseconds, the table sizes, the server's worker
processes, the machine's cores and load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/contentforge_bench"
ENDPOINTS = ("list", "stats", "batch", "batch_pieces", "gallery")
FLOORS = ("health", "persona")


def _serve(database_url: str, port: int, workers: int) -> None:
    """The child process: the API on the seeded database, on 127.0.0.1 only, as `contentforge api serve`."""
    if workers > 1:  # as `contentforge api serve --workers N`: each worker's app comes from the environment
        os.environ.update(
            CONTENTFORGE_DATABASE_URL=database_url,
            CONTENTFORGE_DATA_DIR=os.environ["CONTENTFORGE_BENCH_DATA_DIR"],
            CONTENTFORGE_API_TOKEN=os.environ["CONTENTFORGE_BENCH_TOKEN"],
        )
        from contentforge_cli.api import serve_workers
        from contentforge_cli.api_listeners import bind_for_workers

        listener = bind_for_workers("127.0.0.1", port)
        serve_workers("contentforge_api.app:worker_app", listener, workers=workers, log_level="warning")
        return
    from contentforge.config import Settings
    from contentforge_api.app import create_app, freeze_startup_heap

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        data_dir=Path(os.environ["CONTENTFORGE_BENCH_DATA_DIR"]),
        api_token=os.environ["CONTENTFORGE_BENCH_TOKEN"],
    )
    app = create_app(settings)
    freeze_startup_heap()  # as `contentforge api` does
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _targets(database_url: str, rng: random.Random) -> dict[str, Any]:
    """Persona and batch ids to ask for, and the table sizes, read from the database itself."""
    from sqlalchemy import create_engine, func, select

    from contentforge.db.models import BatchORM, HookORM, PersonaORM, PieceORM

    engine = create_engine(database_url)
    with engine.connect() as conn:
        personas = [row[0] for row in conn.execute(select(PersonaORM.id))]
        batches = [row[0] for row in conn.execute(select(BatchORM.id))]
        sizes = {
            "pieces": conn.scalar(select(func.count()).select_from(PieceORM)),
            "hooks": conn.scalar(select(func.count()).select_from(HookORM)),
            "batches": len(batches),
            "personas": len(personas),
        }
        per_persona = conn.scalar(
            select(func.count()).select_from(PieceORM).where(PieceORM.persona_id == personas[0])
        )
    engine.dispose()
    if not personas or not batches:
        raise SystemExit(f"{database_url} holds no personas or batches: run benchmarks/seed_pieces.py first")
    return {
        "personas": rng.sample(personas, min(len(personas), 20)),
        "batches": rng.sample(batches, min(len(batches), 200)),
        "pages": max(1, int(per_persona or 0) // 50),
        "sizes": sizes,
    }


def _paths(endpoint: str, targets: dict[str, Any], rng: random.Random) -> list[str]:
    persona, batch = rng.choice(targets["personas"]), rng.choice(targets["batches"])
    if endpoint == "health":
        return ["/api/v1/health"]
    if endpoint == "persona":
        return [f"/api/v1/personas/{persona}"]
    if endpoint == "list":
        return [f"/api/v1/personas/{persona}/content?limit=50&offset={50 * rng.randrange(targets['pages'])}"]
    if endpoint == "stats":
        return [f"/api/v1/personas/{persona}/stats"]
    if endpoint == "batch":
        return [f"/api/v1/batches/{batch}"]
    if endpoint == "batch_pieces":
        return [f"/api/v1/batches/{batch}/pieces"]
    return [f"/gallery/batches/{batch}", f"/api/v1/batches/{batch}/gallery"]


async def _get_all(http: Any, paths: list[str]) -> None:
    """The first path, then the rest in parallel (the gallery's page, then what its script reads)."""
    first, *rest = paths
    for response in [await http.get(first), *await asyncio.gather(*(http.get(path) for path in rest))]:
        if response.status_code != 200:
            raise SystemExit(f"GET {response.url} answered {response.status_code}: {response.text[:200]}")


async def _measure(
    base: str, token: str, endpoint: str, targets: dict[str, Any], clients: int, requests: int, seed: int
) -> list[float]:
    """``requests`` timed requests (or request sequences) spread over ``clients`` concurrent clients."""
    import httpx

    rng = random.Random(seed)
    work = [_paths(endpoint, targets, rng) for _ in range(requests)]
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            while work:
                paths = work.pop()
                began = time.perf_counter()
                await _get_all(http, paths)
                latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the server has used so far: the process and its workers."""
    import psutil

    server = psutil.Process(pid)
    total = 0.0
    for process in (server, *server.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM (workers shut down gracefully), then kill whatever is left of the process tree."""
    import psutil

    try:
        tree = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    server.terminate()
    for process in psutil.wait_procs(tree, timeout=60)[1]:
        process.kill()
    server.wait(timeout=30)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="per endpoint")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes, as `contentforge api serve --workers`"
    )
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.database_url, args.serve, args.workers)
        return
    if args.clients < 1 or args.requests < 1 or args.workers < 1:
        raise SystemExit("--clients, --requests and --workers must be at least 1")

    rng = random.Random(0)
    targets = _targets(args.database_url, rng)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        CONTENTFORGE_BENCH_TOKEN=token,
        CONTENTFORGE_BENCH_DATA_DIR=tempfile.mkdtemp(prefix="contentforge-api-bench-"),
    )
    serve = ["--serve", str(port), "--database-url", args.database_url, "--workers", str(args.workers)]
    server = subprocess.Popen([sys.executable, __file__, *serve], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        # Each worker imports the whole API: on a loaded 2-core machine that alone took over a minute.
        deadline = time.monotonic() + 120 * args.workers
        while True:
            try:
                if httpx.get(f"{base}/api/v1/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the API server did not start")
            time.sleep(0.25)
        loadavg_before = [round(v, 2) for v in os.getloadavg()]
        results: dict[str, Any] = {}
        for number, endpoint in enumerate(FLOORS + ENDPOINTS):
            asyncio.run(  # warm-up, untimed
                _measure(base, token, endpoint, targets, args.clients, 2 * args.clients, 100 + number)
            )
            began, cpu_before = time.perf_counter(), _cpu_seconds(server.pid)
            latencies = asyncio.run(
                _measure(base, token, endpoint, targets, args.clients, args.requests, number)
            )
            seconds = time.perf_counter() - began
            results[endpoint] = {
                # The API process's own CPU per request (or gallery sequence): unlike the latencies,
                # it hardly moves with the machine's load; 8 clients on one process wait ~8x it.
                # With --workers, the sum over the worker processes.
                "server_cpu_ms": round(1000 * (_cpu_seconds(server.pid) - cpu_before) / len(latencies), 2),
                "p50_ms": round(1000 * _percentile(latencies, 0.50), 1),
                "p95_ms": round(1000 * _percentile(latencies, 0.95), 1),
                "max_ms": round(1000 * max(latencies), 1),
                "requests": len(latencies),
                "per_second": round(len(latencies) / seconds, 1),
            }
    finally:
        _stop(server)
    from contentforge.images.cpu_sizing import available_cores

    print(
        json.dumps(
            {
                "database": args.database_url.split("@")[-1],
                "tables": targets["sizes"],
                "clients": args.clients,
                "workers": args.workers,
                "endpoints": {name: results[name] for name in ENDPOINTS},
                "floor": {name: results[name] for name in FLOORS},
                "p95_target_ms": 50,
                "all_p95_within_target": all(results[name]["p95_ms"] <= 50 for name in ENDPOINTS),
                "machine": {
                    "cpu_count": os.cpu_count(),
                    "available_cores": available_cores(),
                    "loadavg_before": loadavg_before,
                    "loadavg_after": [round(v, 2) for v in os.getloadavg()],
                },
            }
        )
    )


if __name__ == "__main__":
    main()
