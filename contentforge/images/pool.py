"""Load each pipeline once per process and share it safely between threads.

A diffusers pipeline is not thread-safe: ``__call__`` keeps per-call state on the pipeline object
and the scheduler keeps the step index. Weights, however, are read-only during inference. So a pool
holds one *base* pipeline (the weights) and ``replicas`` light pipelines made with ``from_pipe``
that share those weights but each have their own scheduler and tokenizers. A call leases a replica.

LoRA state lives on the shared modules, so an ``AdapterGate`` lets generations with the same adapter
set run together and switches adapters only when none is running (FIFO, so nobody starves).
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass(frozen=True)
class PoolKey:
    """What makes two pipelines interchangeable: the same weights, precision and device."""

    model: str
    dtype: str
    device: str


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
    def hold(self, key: Hashable, switch: Callable[[], None]) -> Iterator[None]:
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
        self.key = key
        self.base: Any = base
        self.size = len(replicas)
        self.gate = AdapterGate()
        self.loaded_adapters: dict[str, str] = {}
        """Adapter name -> source, for adapters already loaded into the shared modules."""
        self._free: queue.SimpleQueue[R] = queue.SimpleQueue()
        for replica in replicas:
            self._free.put(replica)

    @contextmanager
    def lease(self, adapters: Hashable, switch: Callable[[], None]) -> Iterator[R]:
        """A replica, with adapter set ``adapters`` active on the shared weights for the whole call."""
        replica = self._free.get()
        try:
            with self.gate.hold(adapters, switch):
                yield replica
        finally:
            self._free.put(replica)

    def close(self) -> None:
        """Drop this pool's references to the weights (running leases keep theirs until they end)."""
        self.base = None
        while not self._free.empty():
            self._free.get_nowait()
        self.loaded_adapters.clear()


_POOLS: dict[PoolKey, PipelinePool[Any]] = {}
_LOAD_LOCKS: dict[PoolKey, threading.Lock] = {}
_REGISTRY_LOCK = threading.Lock()


def get_pool(key: PoolKey, load: Callable[[], tuple[Any, list[R]]]) -> PipelinePool[R]:
    """The process-wide pool for ``key``, loading it with ``load`` exactly once even under concurrency."""
    with _REGISTRY_LOCK:
        pool = _POOLS.get(key)
        if pool is not None:
            return pool
        load_lock = _LOAD_LOCKS.setdefault(key, threading.Lock())
    with load_lock:
        with _REGISTRY_LOCK:
            pool = _POOLS.get(key)
        if pool is not None:
            return pool
        logger.info("loading image pipeline %s on %s (%s)", key.model, key.device, key.dtype)
        base, replicas = load()
        pool = PipelinePool(key, base, replicas)
        with _REGISTRY_LOCK:
            _POOLS[key] = pool
        return pool


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
