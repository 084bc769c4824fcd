"""Concurrency figures computed from the timestamps stored on pieces (not from timed tests)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ConcurrencyFigures:
    """Peak overlap of generation intervals and how busy ``slots`` slots were during the phase."""

    pieces: int
    peak_concurrent: int
    busy_seconds: float
    phase_seconds: float
    slot_utilization: float


def concurrency_figures(intervals: Iterable[tuple[datetime, datetime]], slots: int) -> ConcurrencyFigures:
    """Sweep the (started, finished) intervals: peak overlap and busy slot-seconds / (slots x phase).

    An interval that ends exactly when another starts does not overlap it (ends sort first).
    """
    spans = [(start, end) for start, end in intervals if start is not None and end is not None]
    if not spans:
        return ConcurrencyFigures(0, 0, 0.0, 0.0, 0.0)
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda ev: (ev[0], ev[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    busy = sum((end - start).total_seconds() for start, end in spans)
    phase = (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds()
    utilization = busy / (slots * phase) if phase > 0 else 0.0
    return ConcurrencyFigures(len(spans), peak, busy, phase, utilization)
