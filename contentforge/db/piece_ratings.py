"""Who rated which piece: a 1-5 rating counts once per piece and rater, however often it is sent.

Why: a rating feeds the recommender's scores (``models.feedback``); a retried request, a double click
or a second tab must not count it twice. The claims live in the batch's ``params`` JSON (no new
column), taken under a lock on the batch row, so two requests at once cannot both claim.
"""

from __future__ import annotations

from sqlalchemy import select

from contentforge.db.models import BatchORM
from contentforge.db.sessions import Store

RATINGS_PARAM = "ratings"


class PieceRatings(Store):
    def claim(self, batch_id: str, piece_id: str, rater: str, rating: int) -> int | None:
        """Record that ``rater`` rated the piece; None if this is their first rating of it, else the rating
        they gave before (and nothing changes)."""
        with self._db.write() as session:
            batch = session.scalars(select(BatchORM).where(BatchORM.id == batch_id).with_for_update()).one()
            ratings = {k: dict(v) for k, v in ((batch.params or {}).get(RATINGS_PARAM) or {}).items()}
            given = ratings.get(piece_id, {})
            if rater in given:
                return int(given[rater])
            ratings[piece_id] = {**given, rater: rating}
            batch.params = {**(batch.params or {}), RATINGS_PARAM: ratings}
        return None
