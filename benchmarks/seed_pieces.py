"""Seed a database with a large history for the read benchmark: pieces, hooks, verdicts and costs.

By default 100,000 pieces in 2,000 batches for 50 personas, each piece with 5 hooks, a moderation
verdict and 3 cost entries (image, text, moderation), written in bulk into a database of its own
(``contentforge_bench`` on the local PostgreSQL, created if absent and migrated to head). The rows are
synthetic and say so (prompts, storage keys and providers are marked ``bench``); they have the shape
real batches leave, so the API's queries meet a realistic table, not a realistic picture.

    python benchmarks/seed_pieces.py                          # 100k pieces into contentforge_bench
    python benchmarks/seed_pieces.py --pieces 2000 --batches 40 --personas 5
    python benchmarks/seed_pieces.py --drop                   # drop the database again

Prints one JSON object: what was written and how long it took.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/contentforge_bench"
CHUNK = 5000
STATUSES = [
    ("ready", 0.78),
    ("needs_review", 0.08),
    ("rejected", 0.06),
    ("failed", 0.04),
    ("generated", 0.04),
]
TIERS = ["safe", "suggestive"]
PLATFORMS = ["instagram", "tiktok", "x"]


def _admin(url: str) -> tuple[Any, str]:
    """An autocommit engine on the server's ``postgres`` database, and the name of the bench database."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    target = make_url(url)
    if target.get_backend_name() != "postgresql":
        raise SystemExit(f"--database-url must be PostgreSQL (the benchmark is about a large server): {url}")
    if target.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"--database-url must be a loopback server, not {target.host!r}")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    return admin, str(target.database)


def create_database(url: str) -> None:
    admin, name = _admin(url)
    with admin.connect() as conn:
        exists = conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).first()
        if not exists:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()


def drop_database(url: str) -> None:
    admin, name = _admin(url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _pick(rng: random.Random, weighted: list[tuple[str, float]]) -> str:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def seed(url: str, personas: int, batches: int, pieces: int, seed_value: int = 0) -> dict[str, Any]:
    """Write the rows; returns the counts. The database must be empty of bench rows (a fresh one)."""
    from sqlalchemy import insert

    from contentforge.db import Repository
    from contentforge.db.models import BatchORM, CostEntryORM, HookORM, ModerationVerdictORM, PieceORM
    from contentforge.personas import sample_persona

    rng = random.Random(seed_value)
    repo = Repository.open(url)  # migrated to head: the indexes under test are the migrations'
    template = sample_persona()
    persona_ids = [f"bench-{i:03d}" for i in range(personas)]
    for i, persona_id in enumerate(persona_ids):
        repo.upsert_persona(template.model_copy(update={"id": persona_id, "name": f"Bench persona {i:03d}"}))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    per_batch = max(1, pieces // batches)
    counts = dict.fromkeys(["batches", "pieces", "hooks", "verdicts", "costs"], 0)
    with repo.sessions.write() as session:
        batch_rows = []
        for b in range(batches):
            started = start + timedelta(hours=b)
            batch_rows.append(
                {
                    "id": f"bench{b:06d}",
                    "persona_id": persona_ids[b % personas],
                    "platform": PLATFORMS[b % len(PLATFORMS)],
                    "num_pieces": per_batch,
                    "tier_mix": {"safe": 0.7, "suggestive": 0.3},
                    "seed": b,
                    "params": {"steps": 4, "bench": True},
                    "status": "completed",
                    "started_at": started,
                    "finished_at": started + timedelta(minutes=2),
                    "summary": {"bench": True},
                }
            )
        session.execute(insert(BatchORM), batch_rows)
        counts["batches"] = len(batch_rows)
    pending: dict[str, list[dict[str, Any]]] = {"pieces": [], "hooks": [], "verdicts": [], "costs": []}
    tables = {"pieces": PieceORM, "hooks": HookORM, "verdicts": ModerationVerdictORM, "costs": CostEntryORM}

    def flush() -> None:
        with repo.sessions.write() as session:
            for name in ("pieces", "hooks", "verdicts", "costs"):  # parents before children
                if pending[name]:
                    session.execute(insert(tables[name]), pending[name])
                    counts[name] += len(pending[name])
                    pending[name] = []

    for n in range(batches * per_batch):
        batch = batch_rows[n // per_batch]
        index = n % per_batch
        piece_id = f"{batch['id']}-{index:03d}"
        status = _pick(rng, STATUSES)
        finished = batch["started_at"] + timedelta(seconds=index)
        made = status != "failed"
        tier = rng.choice(TIERS) if made else None
        verdict = {"ready": tier, "needs_review": "restricted", "rejected": "rejected"}.get(status)
        pending["pieces"].append(
            {
                "id": piece_id,
                "batch_id": batch["id"],
                "persona_id": batch["persona_id"],
                "index": index,
                "template_id": f"FIT-{rng.randint(1, 40):03d}",
                "template_tier": rng.choice(TIERS),
                "status": status,
                "prompt": f"bench prompt {n}: a synthetic row for the read benchmark",
                "negative_prompt": "blurry",
                "seed": rng.getrandbits(32),
                "storage_key": f"content/{batch['persona_id']}/{piece_id}.png" if made else None,
                "content_sha256": f"{n:064x}" if made else None,
                "queued_at": batch["started_at"],
                "started_at": finished - timedelta(seconds=1),
                "finished_at": finished,
                "generation_seconds": round(rng.uniform(0.8, 1.4), 3),
                "cost_usd": 0.002 if made else 0.0,
                "verdict": verdict,
                "tier": tier,
                "moderation_scores": {"sexual": round(rng.random() * 0.5, 3)} if verdict else None,
                "moderation_reasons": [] if verdict else None,
                "error": None if made else "bench: a failed generation",
                "created_at": batch["started_at"],
                "updated_at": finished,
            }
        )
        if made:
            for position in range(5):
                pending["hooks"].append(
                    {
                        "piece_id": piece_id,
                        "position": position,
                        "style": "question",
                        "platform": batch["platform"],
                        "text": f"bench hook {position} of {piece_id}",
                        "call_to_action": "Follow for more",
                        "hashtags": ["fitness", "bench"],
                    }
                )
        if verdict:
            pending["verdicts"].append(
                {
                    "piece_id": piece_id,
                    "verdict": verdict,
                    "scores": {"sexual": 0.1},
                    "reasons": [],
                    "backends": ["bench"],
                    "created_at": finished,
                }
            )
        for kind, amount in (("image", 0.002), ("text", 0.0005), ("moderation", 0.0001)):
            if kind != "image" or made:
                pending["costs"].append(
                    {
                        "batch_id": batch["id"],
                        "piece_id": piece_id,
                        "persona_id": batch["persona_id"],
                        "kind": kind,
                        "provider": "bench",
                        "amount_usd": amount,
                        "charge_key": f"bench:{kind}:{piece_id}",
                        "created_at": finished,
                    }
                )
        if len(pending["pieces"]) >= CHUNK:
            flush()
    flush()
    with repo.engine.connect() as conn:  # fresh statistics, as autovacuum would give a live table
        conn.exec_driver_sql("ANALYZE")
        conn.commit()  # statistics written in a transaction that rolls back are lost
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL, help="a loopback PostgreSQL database")
    parser.add_argument("--personas", type=int, default=50)
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--pieces", type=int, default=100_000)
    parser.add_argument("--drop", action="store_true", help="drop the database and exit")
    args = parser.parse_args()
    if args.drop:
        drop_database(args.database_url)
        print(json.dumps({"dropped": args.database_url}))
        return
    if min(args.personas, args.batches, args.pieces) < 1 or args.pieces // args.batches > 500:
        raise SystemExit("--personas, --batches and --pieces must be positive, at most 500 pieces per batch")
    create_database(args.database_url)
    started = time.perf_counter()
    counts = seed(args.database_url, args.personas, args.batches, args.pieces)
    print(
        json.dumps(
            {"database_url": args.database_url, "personas": args.personas, **counts}
            | {"seconds": round(time.perf_counter() - started, 1)}
        )
    )


if __name__ == "__main__":
    main()
