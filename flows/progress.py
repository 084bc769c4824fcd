"""A batch's progress artifact, advanced as pieces finish (shown in the Prefect UI)."""

from __future__ import annotations

import threading
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact


class BatchProgress:
    """Counts finished steps out of ``total`` and mirrors the percentage into a progress artifact."""

    def __init__(self, batch_id: str, total_steps: int, artifact_id: UUID | None = None) -> None:
        self.total_steps = max(total_steps, 1)
        self.done = 0
        self._lock = threading.Lock()
        self.artifact_id = artifact_id or create_progress_artifact(
            progress=0.0,
            key=f"batch-{batch_id[:12]}-progress",
            description=f"Batch {batch_id}: pieces finished",
        )

    def advance(self, steps: int = 1, note: str | None = None) -> float:
        with self._lock:
            self.done = min(self.done + steps, self.total_steps)
            percent = 100.0 * self.done / self.total_steps
        update_progress_artifact(self.artifact_id, progress=percent, description=note)
        return percent
