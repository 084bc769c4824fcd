"""A flow that reports the process it runs in: for the preloaded cpu worker's tests.

It imports nothing from ContentForge, so a flow module it finds already imported was imported by the
worker's fork server, not by this run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from prefect import flow


@flow
def probe(report: str, hold_s: float = 0.0) -> None:
    """Write where this run runs to ``report``, with a child process of its own, then wait ``hold_s``."""
    child = subprocess.Popen(["sleep", str(max(hold_s, 0.1))])
    parent_command = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    facts = {
        "pid": os.getpid(),
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
