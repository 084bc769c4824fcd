"""How many generations one process runs at once on CPU, and with how many torch threads each.

Why: the ``image-generation`` limit (5) caps generations across all workers, but on CPU five
concurrent generations compete for the same cores and finish later than one after another (figures:
docs/benchmarks.md). So on CPU the 5 slots are a ceiling, not a quota: a process runs as many
generations as its cores allow, and each gets its share of the cores as torch intra-op threads.
A process never takes more global slots than it can use, so slots it cannot use stay free for other
workers. On a GPU the device, not the cores, decides: nothing changes there.

torch's thread count is process-wide (``torch.set_num_threads``), which is why it is sized here,
once per process, next to the number of concurrent generations it is split between.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CORES_PER_GENERATION = 4
"""Cores one CPU generation gets by default. Intra-op threads scale a convolution or an attention
over a few cores, while concurrent generations in one process also share the GIL for everything
between the tensor operations; measured on 2 cores, one generation at a time was fastest."""
MAX_AUTO_CONCURRENCY = 5
"""Never more than the default limit's slots by default: each concurrent generation holds a replica."""


@dataclass(frozen=True)
class CpuSizing:
    """Generations at once in this process, torch threads for them, and why."""

    concurrency: int
    threads: int
    reason: str


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cpu_sizing(replicas: int = 0, threads: int = 0, cores: int | None = None) -> CpuSizing:
    """Size CPU generation: ``replicas``/``threads`` as configured, or 0 for what the cores allow.

    Auto: one generation per ``CORES_PER_GENERATION`` cores (at least one, at most
    ``MAX_AUTO_CONCURRENCY``), and the cores but one split evenly between them as torch threads: the
    batch's own process (moderation, hooks, Prefect's client) and, locally, the Prefect server need the
    other. Measured on 2 cores with the tiny pipeline at load ~2, one generation on one thread was the
    fastest split (docs/benchmarks.md); under heavy load the order changed from run to run.
    """
    cores = cores or available_cores()
    if replicas:
        concurrency, why = replicas, f"CONTENTFORGE_IMAGE_REPLICAS={replicas}"
    else:
        concurrency = min(MAX_AUTO_CONCURRENCY, max(1, cores // CORES_PER_GENERATION))
        why = f"auto: {cores} core(s), one generation per {CORES_PER_GENERATION}"
    if threads:
        per_generation, why_threads = threads, f"CONTENTFORGE_IMAGE_THREADS={threads}"
    else:
        per_generation = max(1, (cores - 1) // concurrency)
        why_threads = f"auto: {cores} core(s) but one split between {concurrency} generation(s)"
    return CpuSizing(concurrency, per_generation, f"{why}; {per_generation} torch thread(s) ({why_threads})")


def local_generation_limit(backend: object, slots: int) -> int:
    """How many slots of the global limit one process should hold at once for ``backend``.

    A backend that can only run ``max_concurrent`` generations at once in this process (a CPU
    pipeline) would leave the extra slots held but idle; other backends (GPU, remote, the labelled
    fixed-latency one) use every slot.
    """
    local = getattr(backend, "max_concurrent", None)
    return max(1, min(slots, local)) if isinstance(local, int) and local > 0 else slots
