"""The learn step on N personas × D days of daily posts: seconds and peak memory, as one JSON object.

Each persona is a SIMULATED account (``contentforge.analytics.simulator``; 1 post a day on average,
snapshots at every age, a daily account series). Building the accounts is not timed; the timed part
is exactly what the ``learn`` flow does per account, without the database: normalized engagement,
posting times (empirical Bayes), the five rankings, reach-drop detection (STL + MAD) and the
gradient-boosting engagement model with its 5-fold time-ordered evaluation. Peak memory is Python's
``tracemalloc`` peak during the timed part (numpy and pandas report their buffers to it) and the
process's max RSS. ``cpu_seconds`` is the process's CPU time in the timed part: on a shared, busy
machine (see ``load_average_1m_before``) wall seconds grow with the load, CPU seconds do not.

    python benchmarks/learn_step.py --personas 10 --days 730
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime

from contentforge.analytics.learn import learn_account
from contentforge.analytics.simulator import PlantedEffects, simulate_account


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--personas", type=int, default=10)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--posts-per-day", type=float, default=1.0)
    args = parser.parse_args()
    end = datetime(2026, 11, 30, tzinfo=UTC)
    accounts = [
        simulate_account(
            f"bench-{n}", days=args.days, end=end, seed=n, posts_per_day=args.posts_per_day,
            effects=PlantedEffects(best_hour=8 + n % 12),
        )
        for n in range(args.personas)
    ]  # fmt: skip
    per_account: list[float] = []
    recovered = 0
    load_before = os.getloadavg()[0]
    tracemalloc.start()
    cpu_started = time.process_time()
    started = time.perf_counter()
    for sim in accounts:
        t0 = time.perf_counter()
        learning = learn_account(sim.observations, sim.days, account=sim.account, platform=sim.platform)
        per_account.append(time.perf_counter() - t0)
        recovered += (
            learning.timing.best_hour is not None
            and abs(learning.timing.best_hour - sim.effects.best_hour) <= 1
        )
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    posts = sum(len({o.post_id for o in sim.observations}) for sim in accounts)
    print(
        json.dumps(
            {
                "benchmark": "learn_step",
                "personas": args.personas,
                "days": args.days,
                "posts": posts,
                "snapshots": sum(len(sim.observations) for sim in accounts),
                "seconds": round(total, 2),
                "cpu_seconds": round(cpu, 2),
                "seconds_per_persona_max": round(max(per_account), 2),
                "peak_traced_mib": round(peak / 2**20, 1),
                "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "best_hour_recovered": f"{recovered}/{args.personas}",
                "data": "simulated (labelled), not real accounts",
                "load_average_1m_before": round(load_before, 2),
                "machine": {
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
