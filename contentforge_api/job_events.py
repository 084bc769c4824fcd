"""A job's live events (Server-Sent Events): state changes, progress, pieces finished, the end.

Every event id is a *cursor* computed from stored state, not a counter kept in this process: how
many of the flow run's states (Prefect's state history) were sent, the progress percent sent, which
pieces' finishes were sent (a bitmap over the pieces' indexes in the batch), and whether the end
was. A client that reconnects with ``Last-Event-ID`` resumes from exactly that cursor on any API
process, so it sees no event twice and misses none; a piece that is stored late (threads commit
out of order) is still sent, because the cursor names pieces rather than counting them.

Events (``event:`` field; ``data:`` is JSON):

- ``state``: ``{"status", "name", "message", "timestamp"}``, one per state in the run's history;
- ``progress``: ``{"progress", "message"}``, when the whole percent rises;
- ``piece``: ``{"piece_id", "index", "status", "tier"}``, when a piece of the batch reaches its end;
- ``end``: the job as ``GET /jobs/{id}`` shows it, once the run is final and every piece was sent;
  the stream closes after it.

A comment line (``: heartbeat``) is sent whenever nothing else was for ``heartbeat_s``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from fastapi.concurrency import run_in_threadpool
from fastapi.sse import format_sse_event
from sqlalchemy import select

from contentforge.db.models import BatchORM, PieceORM
from contentforge.domain.models import PieceStatus
from contentforge_api.jobs import FINAL_STATUSES, JobStore, read_progress, status_of

EVENT_ID_PATTERN = r"^(\d{1,6})\.(\d{1,3})\.([0-9a-f]{1,300})\.([01])$"
"""An event id: states sent, percent sent, the bitmap of pieces sent (hex), whether the end was sent."""
_CURSOR = re.compile(EVENT_ID_PATTERN)
FINISHED = frozenset({PieceStatus.ready, PieceStatus.needs_review, PieceStatus.rejected, PieceStatus.failed})
"""Piece statuses that end a piece's run through a batch with moderation (without it, ``generated`` too)."""


class BadCursor(ValueError):
    """A ``Last-Event-ID`` this API never sent."""


@dataclass(frozen=True)
class Cursor:
    states: int = 0
    progress: int = 0
    pieces: int = 0
    """Bitmap: bit ``i`` set when the finish of the piece with index ``i`` was sent."""
    ended: bool = False

    def encode(self) -> str:
        return f"{self.states}.{self.progress}.{self.pieces:x}.{int(self.ended)}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        match = _CURSOR.match(text.strip())
        if match is None:
            raise BadCursor(f"Last-Event-ID {text[:80]!r} is not an event id of this stream")
        states, progress, pieces, ended = match.groups()
        return cls(int(states), int(progress), int(pieces, 16), ended == "1")

    def has_piece(self, index: int) -> bool:
        return bool(self.pieces >> index & 1)


def sse(event: str, data: dict[str, Any], cursor: Cursor) -> bytes:
    return format_sse_event(event=event, data_str=json.dumps(data, default=str), id=cursor.encode())


async def job_events(
    jobs: JobStore, job_id: UUID, cursor: Cursor, *, poll_s: float = 0.5, heartbeat_s: float = 10.0
) -> AsyncIterator[bytes]:
    """The stream's bytes from ``cursor`` on, until the ``end`` event (or the client leaves)."""
    if cursor.ended:
        return
    idle = 0.0
    while True:
        sent = False
        async with jobs.launcher.client() as client:
            run = await client.read_flow_run(job_id)
            states = await client.read_flow_run_states(job_id)
            progress, note = await read_progress(client, job_id)
        final = status_of(run) in FINAL_STATUSES
        for state in states[cursor.states :]:
            cursor = replace(cursor, states=cursor.states + 1)
            payload = {
                "status": state.type.value.lower(),
                "name": state.name,
                "message": state.message,
                "timestamp": state.timestamp,
            }
            yield sse("state", payload, cursor)
            sent = True
        batch_id = (run.parameters or {}).get("batch_id")
        if batch_id:
            for piece in await run_in_threadpool(_finished_pieces, jobs, str(batch_id)):
                if not cursor.has_piece(piece["index"]):
                    cursor = replace(cursor, pieces=cursor.pieces | 1 << piece["index"])
                    yield sse("piece", piece, cursor)
                    sent = True
        percent = 100 if status_of(run) == "completed" else int(progress or 0)
        if percent > cursor.progress:
            cursor = replace(cursor, progress=percent)
            yield sse("progress", {"progress": percent, "message": note}, cursor)
            sent = True
        if final and len(states) <= cursor.states:
            job = await jobs.get(job_id)
            yield sse("end", job.model_dump(mode="json"), replace(cursor, ended=True))
            return
        idle = 0.0 if sent else idle + poll_s
        if idle >= heartbeat_s:
            idle = 0.0
            yield b": heartbeat\n\n"
        await asyncio.sleep(poll_s)


def _finished_pieces(jobs: JobStore, batch_id: str) -> list[dict[str, Any]]:
    """The batch's pieces that reached their end, by index (stored state: the same on every reconnect)."""
    with jobs.sessions.read() as session:
        batch = session.get(BatchORM, batch_id)
        if batch is None:
            return []
        finished = set(FINISHED)
        if not (batch.params or {}).get("safety_check", True):
            finished.add(PieceStatus.generated)
        rows = session.execute(
            select(PieceORM.id, PieceORM.index, PieceORM.status, PieceORM.tier)
            .where(PieceORM.batch_id == batch_id, PieceORM.status.in_([s.value for s in finished]))
            .order_by(PieceORM.finished_at, PieceORM.index)
        )
        return [
            {"piece_id": pid, "index": index, "status": status, "tier": tier}
            for pid, index, status, tier in rows
        ]
