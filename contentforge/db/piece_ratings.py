"""Who rated which piece: a 1-5 rating counts once per piece and rater, however often it is sent.

Why: a rating feeds the recommender's scores (``models.feedback``); a retried request, a double click,
a second tab or a second API process must not count it twice. The claim is an INSERT guarded by the
table's primary key ``(piece_id, rater)``, so of two claims at once exactly one is first, on SQLite and
PostgreSQL alike, without locking the batch.
"""

from __future__ import annotations

from sqlalchemy import select

from contentforge.db.models import utcnow
from contentforge.db.models_ratings import PieceRatingORM
from contentforge.db.sessions import Store, insert_for


class PieceRatings(Store):
    def claim(self, piece_id: str, rater: str, rating: int, display_name: str = "") -> int | None:
        """Record that ``rater`` rated the piece; None if this is their first rating of it, else the rating
        they gave before (and nothing changes)."""
        with self._db.write() as session:
            # RETURNING, not the row count: psycopg reports a row count for an INSERT that did nothing.
            inserted = session.execute(
                insert_for(session, PieceRatingORM)
                .values(
                    piece_id=piece_id,
                    rater=rater,
                    rating=rating,
                    display_name=display_name,
                    created_at=utcnow(),
                )
                .on_conflict_do_nothing()
                .returning(PieceRatingORM.rating)
            ).scalar_one_or_none()
            if inserted is not None:
                return None
            return int(
                session.execute(
                    select(PieceRatingORM.rating).where(
                        PieceRatingORM.piece_id == piece_id, PieceRatingORM.rater == rater
                    )
                ).scalar_one()
            )

    def of_piece(self, piece_id: str) -> dict[str, int]:
        """Every rater's rating of the piece."""
        with self._db.read() as session:
            rows = session.execute(
                select(PieceRatingORM.rater, PieceRatingORM.rating).where(PieceRatingORM.piece_id == piece_id)
            ).all()
        return {rater: int(rating) for rater, rating in rows}
