"""A batch's progress artifact, advanced as pieces finish (shown in the Prefect UI)."""

from __future__ import annotations

import threading
import time
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact


class BatchProgress:
    """Counts finished steps out of ``total`` and mirrors the percentage into a progress artifact.

    The artifact is updated at most every ``min_interval_s`` (and always on reaching 100%): three
    batches of 50 pieces finish several steps a second, and each update is a write to the Prefect server
    and an event it stores; on the SQLite default every write waits for the one write lock that the slot
    requests need too. Every 2 s keeps the UI's bar moving (the UI itself refreshes every few seconds)
    with at most a quarter of the updates that every 0.5 s allowed (figures: docs/benchmarks.md).
    """

    def __init__(
        self,
        batch_id: str,
        total_steps: int,
        artifact_id: UUID | None = None,
        *,
        key_suffix: str = "progress",
        min_interval_s: float = 2.0,
    ) -> None:
        self.total_steps = max(total_steps, 1)
        self.done = 0
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._shown: tuple[float, str | None] = (0.0, None)  # (percent, note) last sent
        self._last_update = 0.0
        self.artifact_id = artifact_id or create_progress_artifact(
            progress=0.0,
            key=f"batch-{batch_id}-{key_suffix}",
            description=f"Batch {batch_id}: pieces finished",
        )

    def advance(self, steps: int = 1, note: str | None = None) -> float:
        """Count ``steps`` more finished steps."""
        with self._lock:
            done = self.done + steps
        return self.set_done(done, note)

    def set_done(self, done: int, note: str | None = None) -> float:
        """Set how many steps are finished (for callers that count from the database)."""
        now = time.monotonic()
        with self._lock:
            self.done = min(max(done, 0), self.total_steps)
            percent = 100.0 * self.done / self.total_steps
            due = now - self._last_update >= self.min_interval_s or percent >= 100.0
            changed = (percent, note) != self._shown
            if not (due and changed):
                return percent
            self._shown, self._last_update = (percent, note), now
        update_progress_artifact(self.artifact_id, progress=percent, description=note)
        return percent
