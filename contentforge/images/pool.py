"""Load each pipeline once per process and share it safely between threads.

A diffusers pipeline is not thread-safe: ``__call__`` keeps per-call state on the pipeline object
and the scheduler keeps the step index. Weights, however, are read-only during inference. So a pool
holds one *base* pipeline (the weights) and ``replicas`` light pipelines made with ``from_pipe``
that share those weights but each have their own scheduler and tokenizers. A call leases a replica.

LoRA state lives on the shared modules, so an ``AdapterGate`` lets generations with the same adapter
set run together and switches adapters only when none is running (FIFO, so nobody starves).

Pools are kept in least-recently-used order under a memory budget (``CONTENTFORGE_IMAGE_MEMORY_BUDGET_MB``,
by default a share of CUDA memory or RAM, see ``memory.default_budget_bytes``): before a new model is
placed on its device, and after it is loaded, the least recently used other pools are evicted until the
total size of the weights fits. Eviction drops every reference the pool holds and collects, so the
weights are really freed once running generations finish.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass(frozen=True)
class PoolKey:
    """What makes two pipelines interchangeable: the same weights, precision, device and memory strategy."""

    model: str
    dtype: str
    device: str
    strategy: str = "auto"


_UNKNOWN: Hashable = object()
"""Adapter state after a failed switch: forces the next generation to switch again."""


class AdapterGate:
    """A FIFO gate that admits generations sharing the active adapter set, switching sets when idle."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._current: Hashable = ()
        self._active = 0
        self._queue: deque[object] = deque()
        self.peak = 0
        """The most generations that ever ran at once through this gate (for metrics and tests)."""

    @property
    def current(self) -> Hashable:
        return self._current

    @contextmanager
    def hold(self, key: Hashable, switch: Callable[[], object]) -> Iterator[None]:
        """Run the body with adapter set ``key`` active; ``switch`` activates it while nothing runs."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                self._cond.wait_for(
                    lambda: self._queue[0] is ticket and (self._active == 0 or key == self._current)
                )
                if key != self._current:
                    self._current = _UNKNOWN
                    switch()
                    self._current = key
                self._active += 1
                self.peak = max(self.peak, self._active)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()


class PipelinePool(Generic[R]):
    """One loaded base pipeline plus replicas that share its weights; lease one per generation."""

    def __init__(self, key: PoolKey, base: Any, replicas: list[R]) -> None:
        if not replicas:
            raise ValueError("a pipeline pool needs at least one replica")
        from contentforge.images.memory import module_bytes

        self.key = key
        self.base: Any = base
        self.size_bytes = module_bytes(base)
        """Bytes of the base pipeline's weights (replicas share them)."""
        self.size = len(replicas)
        self.gate = AdapterGate()
        self.loaded_adapters: dict[str, str] = {}
        """Adapter name -> source, for adapters already loaded into the shared modules."""
        self.info: Any = None
        """What the loader reported about the placement (the diffusers backend's ``LoadInfo``)."""
        self._free: queue.SimpleQueue[R] = queue.SimpleQueue()
        for replica in replicas:
            self._free.put(replica)

    @contextmanager
    def lease(self, adapters: Hashable, switch: Callable[[], object]) -> Iterator[R]:
        """A replica, with adapter set ``adapters`` active on the shared weights for the whole call."""
        replica = self._free.get()
        try:
            with self.gate.hold(adapters, switch):
                yield replica
        finally:
            self._free.put(replica)

    def close(self) -> None:
        """Drop this pool's references to the weights (running leases keep theirs until they end)."""
        remove_hooks = getattr(self.base, "remove_all_hooks", None)
        if callable(remove_hooks):  # accelerate's offload hooks keep references to the modules
            try:
                remove_hooks()
            except Exception as exc:
                logger.debug("removing offload hooks failed: %s", exc)
        self.base = None
        while not self._free.empty():
            self._free.get_nowait()
        self.loaded_adapters.clear()


_POOLS: OrderedDict[PoolKey, PipelinePool[Any]] = OrderedDict()
"""Loaded pools, least recently used first."""
_LOAD_LOCKS: dict[PoolKey, threading.Lock] = {}
_REGISTRY_LOCK = threading.Lock()


def get_pool(
    key: PoolKey, load: Callable[[], tuple[Any, ...]], budget_bytes: int | None = None
) -> PipelinePool[R]:
    """The process-wide pool for ``key``, loading it with ``load`` exactly once even under concurrency.

    With ``budget_bytes``, least recently used other pools are evicted after the load until all fit.
    """
    with _REGISTRY_LOCK:
        pool = _POOLS.get(key)
        if pool is not None:
            _POOLS.move_to_end(key)
            return pool
        load_lock = _LOAD_LOCKS.setdefault(key, threading.Lock())
    with load_lock:
        with _REGISTRY_LOCK:
            pool = _POOLS.get(key)
        if pool is not None:
            return pool
        logger.info(
            "loading image pipeline %s on %s (%s, %s)", key.model, key.device, key.dtype, key.strategy
        )
        loaded = load()
        pool = PipelinePool(key, loaded[0], loaded[1])
        pool.info = loaded[2] if len(loaded) > 2 else None
        with _REGISTRY_LOCK:
            _POOLS[key] = pool
        if budget_bytes is not None:
            make_room(0, budget_bytes, keep=key)
        return pool


def loaded_bytes() -> int:
    """Total size of the weights of all loaded pools."""
    with _REGISTRY_LOCK:
        return sum(pool.size_bytes for pool in _POOLS.values())


def make_room(needed_bytes: int, budget_bytes: int, keep: PoolKey | None = None) -> list[PoolKey]:
    """Evict least recently used pools (never ``keep``) until ``needed_bytes`` more fit the budget.

    Returns the evicted keys. If only ``keep`` is left and it still does not fit, nothing more can be
    done here: the caller's memory strategy (offloading, quantization) must make it fit.
    """
    victims: list[PoolKey] = []
    with _REGISTRY_LOCK:
        total = sum(pool.size_bytes for pool in _POOLS.values()) + needed_bytes
        for candidate, pool in _POOLS.items():
            if total <= budget_bytes:
                break
            if candidate == keep:
                continue
            victims.append(candidate)
            total -= pool.size_bytes
    for victim in victims:
        logger.info(
            "evicting image pipeline %s (%s, least recently used) to stay within the %.0f MB memory budget",
            victim.model,
            victim.strategy,
            budget_bytes / 2**20,
        )
        clear(victim)
    return victims


def loaded_keys() -> list[PoolKey]:
    """Keys of the pools currently loaded in this process."""
    with _REGISTRY_LOCK:
        return list(_POOLS)


def clear(key: PoolKey | None = None) -> None:
    """Evict one pool (or all) and really free its memory: drop references, collect, empty CUDA cache."""
    with _REGISTRY_LOCK:
        keys = [key] if key is not None else list(_POOLS)
        evicted = [_POOLS.pop(k) for k in keys if k in _POOLS]
        for k in keys:
            _LOAD_LOCKS.pop(k, None)
    uses_cuda = any(pool.key.device.startswith("cuda") for pool in evicted)
    for pool in evicted:
        pool.close()
    del evicted
    gc.collect()
    if uses_cuda:
        import torch

        torch.cuda.empty_cache()
