"""What a batch process costs the Prefect server and the machine: API calls and resident memory.

Used inside the benchmark's batch processes (``benchmarks/orchestration.py``). API calls are counted
at httpx's ``send``, which every Prefect client request passes through (the sync and async clients,
retries included); only requests to ``PREFECT_API_URL`` count, and answers of 400 or more are counted
apart by status (a SQLite-backed server answers a write it could not lock with 503, and the client
then backs off for seconds before it retries). Events (task-run state changes travel
as events over a websocket in Prefect 3, and the server writes each one) are counted apart, by name,
at ``EventsClient.emit``. Memory is the process's resident set (``/proc/self/statm``), sampled on a thread.
"""

from __future__ import annotations

import json
import os
import re
import resource
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


class ApiCallCounter:
    """Counts requests to the Prefect API by method and path (ids replaced by ``{id}``)."""

    def __init__(self, api_url: str) -> None:
        self._api = httpx.URL(api_url)
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.events: Counter[str] = Counter()

    def _endpoint(self, request: httpx.Request) -> str | None:
        """``METHOD /path`` with ids as ``{id}``; None for a request that is not to the Prefect API."""
        url = request.url
        if (url.host, url.port) != (self._api.host, self._api.port):
            return None
        path = url.path.removeprefix(self._api.path.rstrip("/"))
        return f"{request.method} {_ID.sub('{id}', path)}"

    def record(self, request: httpx.Request) -> None:
        endpoint = self._endpoint(request)
        if endpoint is not None:
            with self._lock:
                self.calls[endpoint] += 1

    def record_answer(self, request: httpx.Request, response: httpx.Response) -> None:
        """Count an error answer (status >= 400) as ``STATUS METHOD /path``."""
        endpoint = self._endpoint(request)
        if endpoint is not None and response.status_code >= 400:
            with self._lock:
                self.errors[f"{response.status_code} {endpoint}"] += 1

    def install(self) -> None:
        """Wrap ``send`` of httpx's sync and async clients (Prefect's clients subclass both)."""
        sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send
        counter = self

        def send(self: httpx.Client, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
            counter.record(request)
            response = sync_send(self, request, *args, **kwargs)
            counter.record_answer(request, response)
            return response

        async def asend(
            self: httpx.AsyncClient, request: httpx.Request, *args: Any, **kwargs: Any
        ) -> httpx.Response:
            counter.record(request)
            response = await async_send(self, request, *args, **kwargs)
            counter.record_answer(request, response)
            return response

        httpx.Client.send = send  # type: ignore[method-assign]
        httpx.AsyncClient.send = asend  # type: ignore[method-assign]

        from prefect.events.clients import EventsClient

        emit = EventsClient.emit

        async def counted_emit(self: EventsClient, event: Any) -> None:
            with counter._lock:
                counter.events[_ID.sub("{id}", str(event.event))] += 1
            await emit(self, event)

        EventsClient.emit = counted_emit  # type: ignore[method-assign]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.errors.clear()
            self.events.clear()


def resident_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """Samples the resident set every ``interval_s`` on a daemon thread: (unix time, MB) pairs."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._interval = interval_s
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.samples.append((round(time.time(), 3), round(resident_bytes() / 2**20, 1)))
            if self._stop.wait(self._interval):
                return


def cpu_seconds(pid: int | None = None) -> float | None:
    """CPU time (user + system) a process has used so far: this one, or ``pid`` (None if unreadable).

    CPU time, unlike wall time, hardly moves with how busy other engineers keep a shared machine, so it
    measures what orchestration costs: the batch processes' Prefect bookkeeping and the server's work.
    """
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def write_stats(path: Path, counter: ApiCallCounter, sampler: RssSampler, cpu_s: float | None = None) -> None:
    """The process's figures for the benchmark's parent process to read (``cpu_s``: the batch's CPU)."""
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    path.write_text(
        json.dumps(
            {
                "cpu_s": None if cpu_s is None else round(cpu_s, 3),
                "api_calls": sum(counter.calls.values()),
                "api_calls_by_endpoint": dict(counter.calls.most_common()),
                "api_errors_by_status": dict(counter.errors.most_common()),
                "events_by_name": dict(counter.events.most_common()),
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "rss_samples": sampler.samples,
            }
        )
    )


def rss_growth_after(samples: list[list[float]], since: float) -> float | None:
    """MB the process grew from its resident set at unix time ``since`` to its largest after it."""
    before = [mb for at, mb in samples if at <= since]
    after = [mb for at, mb in samples if at >= since]
    if not before or not after:
        return None
    return round(max(after) - before[-1], 1)
