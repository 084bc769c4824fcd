"""One generating process of the cross-process priority test (``tests/test_priorities.py``).

Run as ``python -m tests.support.slot_worker SPEC_JSON``: a slot dispatcher of its own on the shared
limit and demand table, as every batch process has, generating ``pieces`` images of one share on the
labelled fixed-latency backend. It says it is ready (its imports, database and client warm) by creating
``ready``, submits every generation once ``go`` exists, and stores each generation's queued, started
and finished times (and the slots it held) as JSON in ``out``, which the test reads back.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path


def main(spec: dict[str, object]) -> None:
    from contentforge.db import make_engine
    from contentforge.db.slot_offers import SlotOffers
    from contentforge.db.turns import DemandTable
    from contentforge.images.fixed_latency import FixedLatencyBackend
    from contentforge.images.protocol import ImageRequest
    from tasks.dispatch import SlotDispatcher

    limit, share, priority = str(spec["limit"]), str(spec["share"]), str(spec["priority"])
    slots = int(str(spec["slots"]))
    engine = make_engine(str(spec["database_url"]))
    table = DemandTable(engine, limit)
    table.read()  # warm: the first connection is not part of the race
    dispatcher = SlotDispatcher(
        limit,
        max_slots=slots,
        linger_s=0.05,
        demand_table=table,
        limit_size=slots,
        slot_offers=SlotOffers(engine, limit),
    )
    backend = FixedLatencyBackend(float(str(spec["latency_s"])))
    generations: list[tuple[int, str, str, str]] = []

    def generate(index: int, queued: datetime) -> None:
        started = datetime.now(UTC)
        backend.generate(
            ImageRequest(prompt=share, seed=index, steps=1, guidance_scale=0.0, width=64, height=64)
        )
        generations.append((index, queued.isoformat(), started.isoformat(), datetime.now(UTC).isoformat()))

    Path(str(spec["ready"])).touch()
    go = Path(str(spec["go"]))
    while not go.exists():
        time.sleep(0.01)
    queued = datetime.now(UTC)
    futures = [
        dispatcher.submit(partial(generate, i, queued), priority=priority, share=share)
        for i in range(int(str(spec["pieces"])))
    ]
    for future in futures:
        future.result(timeout=600)
    dispatcher.close()
    spans = [(granted.isoformat(), released.isoformat()) for granted, released in dispatcher.lease_spans]
    counts = {
        "leases_taken": dispatcher.leases_taken,
        "offers_taken": dispatcher.offers_taken,
        "offers_handed": dispatcher.offers_handed,
        "offers_withdrawn": dispatcher.offers_withdrawn,
    }
    Path(str(spec["out"])).write_text(json.dumps({"generations": generations, "slots": spans, **counts}))
    engine.dispose()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
