"""A flow that reports the process it runs in: for the preloaded cpu worker's tests.

It imports nothing from ContentForge, so a flow module it finds already imported was imported by the
worker's fork server, not by this run.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from prefect import flow


@flow
def probe(report: str, hold_s: float = 0.0) -> None:
    """Write where this run runs to ``report``, with a child process of its own, then wait ``hold_s``;
    ``report``.exit is written by an exit handler, as the process ends."""
    from prefect.settings import get_current_settings

    child = subprocess.Popen(["sleep", str(max(hold_s, 0.1))])
    seen_by_thread: list[int] = []  # what a thread started without the run's context reads
    reader = threading.Thread(
        target=lambda: seen_by_thread.append(get_current_settings().flows.heartbeat_frequency)
    )
    reader.start()
    reader.join()
    atexit.register(Path(report + ".exit").write_text, "ran")
    parent_command = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    facts = {
        "pid": os.getpid(),
        "parent_pid": os.getppid(),
        "thread_heartbeat_s": seen_by_thread[0],
        "process_group": os.getpgid(0),
        "parent_command": parent_command,
        "child_pid": child.pid,
        "cwd": os.getcwd(),
        "job_env": os.environ.get("CONTENTFORGE_PROBE_JOB_ENV"),
        "preloaded_flow_module": "flows.learn" in sys.modules,
    }
    Path(report).write_text(json.dumps(facts))
    time.sleep(hold_s)
    child.wait()
