"""A reviewer name longer than its column is refused in one line before any work (CLI and API).

``review_decisions.reviewer`` holds 120 characters and ``piece_ratings.rater`` 200; over that,
PostgreSQL refuses the row only after the piece was read (SQLite silently keeps it), so the CLI checks
``--reviewer`` first and the API's ``X-ContentForge-Reviewer`` header is held to 1-80 characters. Both
limits are also accepted in full on PostgreSQL, so the check is not stricter than the columns.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support.api import World, build_world
from typer.testing import CliRunner

from contentforge.config import Settings, get_settings
from contentforge.db.piece_ratings import PieceRatings
from contentforge.domain.models import PieceStatus
from contentforge_api import create_app
from contentforge_cli.main import app as cli

TOKEN = "reviewer-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, settings_env: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    if request.param == "postgresql":
        monkeypatch.setenv("CONTENTFORGE_DATABASE_URL", request.getfixturevalue("pg_url"))
    monkeypatch.setenv("CONTENTFORGE_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    return build_world(get_settings())


def _refused(result: object, message: str) -> None:
    output: str = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 2, output  # type: ignore[attr-defined]
    assert [line for line in output.splitlines() if line.strip()] == [f"error: {message}"]


def test_the_cli_refuses_a_reviewer_name_its_column_cannot_hold_and_accepts_one_that_fills_it(
    world: World,
) -> None:
    runner = CliRunner()
    ratings = PieceRatings(world.repo.sessions)

    too_long = runner.invoke(cli, ["review", "rate", "b1-000", "--rating", "4", "--reviewer", "r" * 201])
    _refused(too_long, "--reviewer is 201 characters long; at most 200 are accepted")
    blank = runner.invoke(cli, ["review", "rate", "b1-000", "--rating", "4", "--reviewer", "  "])
    _refused(blank, "--reviewer must name who decides; it is blank")
    assert ratings.of_piece("b1-000") == {}, "nothing was rated"
    full = runner.invoke(cli, ["review", "rate", "b1-000", "--rating", "4", "--reviewer", "r" * 200])
    assert full.exit_code == 0, full.output
    assert ratings.of_piece("b1-000") == {"r" * 200: 4}

    # A decision's reviewer column is shorter; with --rating the same name is also the rater.
    approve = ["review", "approve", "b1-002", "--rating", "5", "--reviewer"]
    _refused(
        runner.invoke(cli, [*approve, "a" * 121]),
        "--reviewer is 121 characters long; at most 120 are accepted",
    )
    reject = ["review", "reject", "b1-003", "--reason", "off-brand", "--reviewer", "a" * 121]
    _refused(runner.invoke(cli, reject), "--reviewer is 121 characters long; at most 120 are accepted")
    assert world.repo.get_piece("b1-002").status is PieceStatus.needs_review  # type: ignore[union-attr]
    assert world.repo.get_piece("b1-003").status is PieceStatus.needs_review  # type: ignore[union-attr]
    assert ratings.of_piece("b1-002") == {}
    approved = runner.invoke(cli, [*approve, "a" * 120])
    assert approved.exit_code == 0, approved.output
    assert world.repo.get_piece("b1-002").status is PieceStatus.ready  # type: ignore[union-attr]
    assert ratings.of_piece("b1-002") == {"a" * 120: 5}


def test_the_api_refuses_a_reviewer_name_over_80_characters_before_rating_or_deciding(world: World) -> None:
    ratings = PieceRatings(world.repo.sessions)
    settings: Settings = get_settings()
    with TestClient(create_app(settings)) as api:
        long_name = {**AUTH, "X-ContentForge-Reviewer": "n" * 81}
        rated = api.post("/api/v1/pieces/b1-000/rating", headers=long_name, json={"rating": 4})
        assert rated.status_code == 422 and "1-80" in rated.json()["error"]["message"], rated.text
        decided = api.post("/api/v1/pieces/b1-002/review", headers=long_name, json={"decision": "approve"})
        assert decided.status_code == 422 and "1-80" in decided.json()["error"]["message"], decided.text
        assert ratings.of_piece("b1-000") == {}
        assert world.repo.get_piece("b1-002").status is PieceStatus.needs_review  # type: ignore[union-attr]

        full_name = {**AUTH, "X-ContentForge-Reviewer": "n" * 80}
        rated = api.post("/api/v1/pieces/b1-000/rating", headers=full_name, json={"rating": 4})
        assert rated.status_code == 200 and rated.json()["rater"] == f"{'n' * 80} (api token)", rated.text
        decided = api.post("/api/v1/pieces/b1-002/review", headers=full_name, json={"decision": "approve"})
        assert decided.status_code == 200 and decided.json()["reviewer"] == f"{'n' * 80} (api token)"
    assert ratings.of_piece("b1-000") == {"api": 4}, "the rater is the token, the header its display name"
