"""``contentforge down`` (``contentforge_cli.stack.stop``) stops a service and everything it started.

A service that exits on SIGTERM is seen gone at once, also when this process started it (it is then a
zombie until reaped, and ``kill(pid, 0)`` succeeds on a zombie: every stop used to wait its whole grace
period). A process the service started that ignores SIGTERM is killed once the grace period ends.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from contentforge_cli.stack import Service, pid_of, start, stop

SLEEPER = "import time; time.sleep(120)"
STUBBORN_CHILD = (
    "import signal, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', "
    "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)'])\n"
    "open(sys.argv[1], 'w').write(str(child.pid))\n"
    "time.sleep(120)\n"
)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie left for its parent (here: init, which reaps it) is as good as gone.
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")


def test_a_service_that_exits_on_sigterm_is_stopped_without_waiting_the_grace_period(tmp_path: Path) -> None:
    service = Service("sleeper", [sys.executable, "-c", SLEEPER], dict(os.environ))
    pid, started = start(tmp_path, service)
    assert started and pid_of(tmp_path, "sleeper") == pid
    began = time.monotonic()
    assert stop(tmp_path, "sleeper", grace_s=20.0)
    assert time.monotonic() - began < 10.0, "stop waited for a process that had exited"
    assert pid_of(tmp_path, "sleeper") is None and not (tmp_path / "sleeper.pid").exists()
    assert not stop(tmp_path, "sleeper"), "a second stop finds nothing running"


def test_what_a_service_started_and_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    child_file = tmp_path / "child.pid"
    service = Service("parent", [sys.executable, "-c", STUBBORN_CHILD, str(child_file)], dict(os.environ))
    start(tmp_path, service)
    deadline = time.monotonic() + 30
    while not child_file.exists() or not child_file.read_text():
        assert time.monotonic() < deadline, "the service never started its child"
        time.sleep(0.05)
    child = int(child_file.read_text())
    assert stop(tmp_path, "parent", grace_s=1.5)
    deadline = time.monotonic() + 10
    while not _gone(child):
        assert time.monotonic() < deadline, "the child that ignored SIGTERM outlived stop"
        time.sleep(0.05)
