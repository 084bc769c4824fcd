"""Which pieces of a running batch have left ``planned``, read at a cost proportional to what changed.

Why: the batch flow polls its pieces every quarter second while the images are made, to moderate each
piece as soon as it is stored. Reading every row of the batch (with its hooks) at each poll made a
500-piece batch read 500 rows four times a second, most of them unchanged. ``PieceStatusWatcher``
asks first how many of the batch's pieces have left ``planned`` (a count over the ``(batch_id,
status)`` index: no row leaves the database), and reads rows only when that number moved: the ids and
statuses of the pieces it has not seen yet; only if the count still disagrees (a piece went back to
``planned``, a reset that only a resumed batch makes), every started piece again. A reset and a
start between the same two polls leave the count unchanged: they are seen at the next change or at
the full read. Columns are two short strings: no ORM objects, no hooks.
What happens to a piece after it left ``planned`` (moderation) is not followed here: the flow follows
that through its own task futures, and asks for one ``full`` read when the images are done.

Clock-free on purpose: a cursor on ``updated_at`` would miss a row whose writer took its timestamp
before, but committed after, a row already seen, and writers may be other machines (a GPU worker).
"""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from contentforge.db.models import PieceORM
from contentforge.db.sessions import SessionPolicy
from contentforge.domain import PieceStatus

PLANNED = PieceStatus.planned.value


class PieceStatusWatcher:
    """The statuses of a batch's pieces that have left ``planned``, kept up to date by ``poll``."""

    def __init__(self, sessions: SessionPolicy, batch_id: str) -> None:
        self._db = sessions
        self._batch_id = batch_id
        self.statuses: dict[str, str] = {}
        """Piece id -> status, for every piece of the batch seen out of ``planned``, in the order seen."""
        self.rows_read = 0
        """Piece rows read so far (not counting the per-status counts): what the polls cost."""

    def poll(self, *, full: bool = False) -> dict[str, str]:
        """Bring ``statuses`` up to date and return it; ``full`` re-reads every started piece once."""
        with self._db.read() as session:
            if full:
                self._read_all(session)
                return self.statuses
            started = self._started_count(session)
            if started != len(self.statuses):
                self._read_new(session)
                if started != len(self.statuses):
                    self._read_all(session)
        return self.statuses

    def _started_count(self, session: Session) -> int:
        query = select(func.count()).where(PieceORM.batch_id == self._batch_id, PieceORM.status != PLANNED)
        return int(session.execute(query).scalar_one())

    def _started(self) -> Select[str, str]:
        return select(PieceORM.id, PieceORM.status).where(
            PieceORM.batch_id == self._batch_id, PieceORM.status != PLANNED
        )

    def _read_new(self, session: Session) -> None:
        query = self._started()
        if self.statuses:
            query = query.where(PieceORM.id.not_in(list(self.statuses)))
        rows = session.execute(query).all()
        self.rows_read += len(rows)
        self.statuses.update((piece_id, status) for piece_id, status in rows)

    def _read_all(self, session: Session) -> None:
        """Every started piece again; one back in ``planned`` (a reset) is forgotten until it starts anew."""
        rows = {piece_id: status for piece_id, status in session.execute(self._started())}
        self.rows_read += len(rows)
        known = {piece_id: rows[piece_id] for piece_id in self.statuses if piece_id in rows}
        self.statuses = known | rows
