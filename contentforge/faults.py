"""Fault injection for tests: ``kill -9`` this process at a named point. A no-op otherwise.

TEST-ONLY. ``fault_point(name)`` does nothing unless the environment variable
``CONTENTFORGE_FAULT_KILL_AT`` names that point; then the process sends itself SIGKILL, which no
``finally``, hook or ``atexit`` survives, exactly like a machine dying there. ``name@N`` kills on the
N-th pass through the point in this process (counted from 1), so a test can let some pieces through
first. Several points may be listed, comma separated.

The points sit between two writes that must look atomic from outside (an image stored but not yet
recorded, a post published but not yet marked), so ``tests/test_faults.py`` can show that a resume
neither repeats nor loses the work. Read from the environment on every call (cheap: one lookup), so
a test sets it in the child process's environment only.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "CONTENTFORGE_FAULT_KILL_AT"

_passes: dict[str, int] = {}
_lock = threading.Lock()


def _wanted(spec: str, name: str, passes: int) -> bool:
    for entry in spec.split(","):
        point, _, nth = entry.strip().partition("@")
        if point == name and (not nth or passes == int(nth)):
            return True
    return False


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL here if ``CONTENTFORGE_FAULT_KILL_AT`` names ``name`` (test-only)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    with _lock:
        _passes[name] = passes = _passes.get(name, 0) + 1
        if _wanted(spec, name, passes):
            os.kill(os.getpid(), signal.SIGKILL)
