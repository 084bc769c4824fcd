"""Waiting on a job through the API, shared by the tests that cancel a running job.

The cancel tests (``test_publish_cancel.py``, ``test_jobs_cancel.py``) poll the jobs view until a
state is reached and then assert on what they read, so a wait that gives up fails with the value seen,
never silently, and never asserts on how long it took.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi.testclient import TestClient

T = TypeVar("T")

ENDED = frozenset({"completed", "failed", "crashed", "cancelled"})
"""A job's statuses once its run has ended, whichever way."""


def wait_for(read: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 180.0) -> T:
    """Poll ``read`` until ``done`` holds of its value or ``timeout_s`` passed; the last value read.

    The caller asserts on the value, so a timeout fails with what was seen, never silently. The
    default bound is generous: the 2-core CI machine may be loaded.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def wait_job(
    api: TestClient,
    job_id: str,
    statuses: set[str] | frozenset[str],
    timeout_s: float,
    headers: Mapping[str, str],
) -> dict[str, Any]:
    """The job as ``GET /api/v1/jobs/{id}`` reads it once its status is one of ``statuses`` (or the
    last read when ``timeout_s`` passed first)."""
    return wait_for(
        lambda: api.get(f"/api/v1/jobs/{job_id}", headers=dict(headers)).json(),
        lambda job: job["status"] in statuses,
        timeout_s,
    )
