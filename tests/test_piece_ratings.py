"""Ratings count once per piece and rater (issue 16): a primary-key claim, on SQLite and PostgreSQL.

The first version kept claims in the batch's ``params`` JSON, where saving an AUTO batch's plans could
overwrite a claim made meanwhile (a lost update: the same rating then counted twice).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import event, text
from support.api import build_world

from contentforge.config import Settings
from contentforge.db.engine import alembic_config, migrate, migration_transaction
from contentforge.db.piece_ratings import PieceRatings


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ratings.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_of_many_concurrent_ratings_by_one_rater_exactly_one_counts(
    database_url: str, tmp_path: Path
) -> None:
    world = build_world(Settings(_env_file=None, data_dir=tmp_path, database_url=database_url))
    ratings = PieceRatings(world.repo.sessions)
    start = threading.Barrier(8)

    def rate(stars: int) -> int | None:
        start.wait()
        return ratings.claim("b1-000", "api", stars, display_name=f"tab {stars}")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(rate, [1, 2, 3, 4, 5, 1, 2, 3]))
    firsts = [i for i, answer in enumerate(answers) if answer is None]
    assert len(firsts) == 1
    kept = [1, 2, 3, 4, 5, 1, 2, 3][firsts[0]]
    assert all(answer == kept for answer in answers if answer is not None)
    assert ratings.of_piece("b1-000") == {"api": kept}
    # Another rater, another piece: their own first ratings.
    assert ratings.claim("b1-000", "cli:rita", 4) is None and ratings.claim("b1-001", "api", 2) is None
    assert ratings.of_piece("b1-000") == {"api": kept, "cli:rita": 4}


def test_claims_kept_in_batch_params_before_the_table_are_carried_over(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    world = build_world(Settings(_env_file=None, data_dir=tmp_path, database_url=url))
    with migration_transaction(world.repo.engine) as connection:
        command.downgrade(alembic_config(connection), "0017_read_paths")
        connection.execute(
            text("UPDATE batches SET params = :params WHERE id = 'b1'"),
            {"params": '{"ratings": {"b1-000": {"Rita (api token)": 5}, "gone": {"x": 3}}}'},
        )
    migrate(url)
    ratings = PieceRatings(world.repo.sessions)
    assert ratings.of_piece("b1-000") == {"Rita (api token)": 5}
    assert ratings.claim("b1-000", "Rita (api token)", 1) == 5  # already counted: not again


def test_the_carry_over_reads_piece_ids_only_when_some_batch_holds_ratings(tmp_path: Path) -> None:
    """Reading every piece id is the migration's one cost that grows with the table: it is paid only
    when there are claims to filter."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    world = build_world(Settings(_env_file=None, data_dir=tmp_path, database_url=url))
    statements: list[str] = []

    def remember(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(" ".join(statement.split()))

    def upgrade_to_0018(params: str) -> list[str]:
        with migration_transaction(world.repo.engine) as connection:
            command.downgrade(alembic_config(connection), "0017_read_paths")
            connection.execute(
                text("UPDATE batches SET params = :params WHERE id = 'b1'"), {"params": params}
            )
            statements.clear()
            event.listen(world.repo.engine, "before_cursor_execute", remember)
            try:
                command.upgrade(alembic_config(connection), "0018_piece_ratings")
            finally:
                event.remove(world.repo.engine, "before_cursor_execute", remember)
        return [s for s in statements if s.startswith("SELECT pieces.id")]

    assert upgrade_to_0018('{"mode": "auto"}') == []
    assert PieceRatings(world.repo.sessions).of_piece("b1-000") == {}
    assert upgrade_to_0018('{"ratings": {"b1-000": {"cli:rita": 4}}}') == ["SELECT pieces.id FROM pieces"]
    assert PieceRatings(world.repo.sessions).of_piece("b1-000") == {"cli:rita": 4}
