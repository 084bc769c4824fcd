"""Cover scoring has a caller: each piece's cover is picked among its image and its seed variations,
recorded on the piece, and explained (CLI ``analytics covers``); the gallery's predictions endpoint
shows predictions per planned piece, or honestly why there are none.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import update
from support.publishing import World, make_world
from typer.testing import CliRunner

from contentforge.analytics.image_features import image_features
from contentforge.analytics.simulator import simulate_account
from contentforge.config import Settings
from contentforge.db.analytics import AnalyticsStore
from contentforge.db.engine import make_session_factory
from contentforge.db.models import PieceORM
from contentforge.domain.analytics import PostMetrics
from contentforge_api.app import create_app
from contentforge_cli.main import app

NOW = datetime(2026, 3, 2, 6, tzinfo=UTC)
TOKEN = "covers-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def blocks(low: int, high: int, size: int = 64) -> bytes:
    pixels = np.full((size, size, 3), low)
    pixels[:, size // 2 :] = high
    return png(pixels)


def _history(store: AnalyticsStore, posts: int) -> None:
    """Real posts whose engagement rose with their image's contrast (in shuffled order, not a trend)."""
    gaps = np.random.default_rng(3).permutation(np.linspace(0, 100, posts).astype(int))
    store.record(
        [
            PostMetrics(
                "mia",
                "instagram",
                f"h{i}",
                NOW - timedelta(days=posts - i),
                24,
                NOW,
                "api",
                reach=1000,
                likes=10 + int(gap),
                features=image_features(blocks(128 - gap, 128 + gap)),
            )
            for i, gap in enumerate(gaps)
        ]
    )


def _world(data_dir: Path, tmp_path: Path) -> World:
    """p00 (flat grey) has a seed variation p02 (strong contrast) in the same batch; p01 stands alone."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(data_dir / 'contentforge.db').resolve()}"
    world = make_world(tmp_path, ["ready-safe", "ready-safe", "ready-safe"], url=url)
    with make_session_factory(world.engine)() as session, session.begin():
        session.execute(update(PieceORM).where(PieceORM.id == "p02").values(parent_piece_id="p00"))
    world.storage.put("content/mia/p00.png", png(np.full((64, 64, 3), 128)), "image/png")
    world.storage.put("content/mia/p02.png", blocks(40, 216), "image/png")
    return world


def covers(batch_id: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["analytics", "covers", batch_id, "-p", "instagram"])
    return result.exit_code, result.output


def test_covers_pick_the_variation_closest_to_the_top_posts_and_record_why(
    settings_env: Path, tmp_path: Path
) -> None:
    world = _world(settings_env, tmp_path)
    store = AnalyticsStore(world.engine)
    _history(store, 24)
    code, out = covers(world.batch_id)
    assert code == 0, out
    assert (
        "engagement model not used: only 19 posts of history" in out
    )  # too little for the model: closeness decides
    assert "p00: not p00" in out and "contrast 100% below your top-performing posts" in out
    recorded = store.feedback_of("p00")
    assert recorded is not None
    cover = recorded["cover:instagram"]
    assert cover["chosen"] == "p02" and [c["piece_id"] for c in cover["candidates"]] == ["p02", "p00"]
    assert "closeness" in cover["method"] and cover["candidates"][0]["features"]["contrast"] > 0.3
    assert store.feedback_of("p01") is not None and store.feedback_of("p02") is None  # a variation: no cover


def test_a_batch_of_variations_chooses_the_cover_of_their_parent(settings_env: Path, tmp_path: Path) -> None:
    world = _world(settings_env, tmp_path)
    world.repo.create_batch(
        batch_id="vb", persona_id="mia", platform="instagram", num_pieces=1,
        tier_mix={"safe": 1.0, "suggestive": 0.0}, seed=1, params={}, flow_run_id=None,
    )  # fmt: skip
    with make_session_factory(world.engine)() as session, session.begin():
        session.execute(update(PieceORM).where(PieceORM.id == "p02").values(batch_id="vb"))
    store = AnalyticsStore(world.engine)
    _history(store, 24)
    code, out = covers("vb")
    assert code == 0, out
    recorded = store.feedback_of("p00")
    assert recorded is not None and recorded["cover:instagram"]["chosen"] == "p02"
    assert store.feedback_of("p01") is None  # not in the variations' families


def test_covers_refuse_thin_history_in_one_line(settings_env: Path, tmp_path: Path) -> None:
    world = _world(settings_env, tmp_path)
    _history(AnalyticsStore(world.engine), 10)
    code, out = covers(world.batch_id)
    assert code != 0 and out.strip().splitlines() == [
        "error: cover scoring needs image features of at least 8 posts; this account has 5"
    ]


@pytest.fixture
def api(settings_env: Path, tmp_path: Path) -> tuple[TestClient, World]:
    world = _world(settings_env, tmp_path)
    settings = Settings(_env_file=None, data_dir=settings_env, api_token=TOKEN)  # type: ignore[call-arg]
    return TestClient(create_app(settings)), world


def test_gallery_predictions_say_why_there_are_none(api: tuple[TestClient, World]) -> None:
    client, world = api
    path = f"/api/v1/analytics/batches/{world.batch_id}/predictions"
    with client:
        assert client.get(path).status_code == 401
        assert client.get("/api/v1/analytics/batches/nope/predictions", headers=AUTH).status_code == 404
        none = client.get(path, headers=AUTH).json()
        assert none["predictions"] == {} and none["model"]["usable"] is False
        assert (
            none["model"]["reason"] == "no metrics for 'mia' on instagram yet: collect or import some first"
        )
        store = AnalyticsStore(world.engine)
        _history(store, 24)
        store.record_feedback("p00", {"cover:instagram": {"chosen": "p02"}})
        thin = client.get(path, headers=AUTH).json()
    assert (
        thin["predictions"] == {}
        and "not used: only 19 posts of history (at least 60 needed)" in thin["model"]["reason"]
    )
    assert thin["covers"] == {"p00": {"chosen": "p02"}}


def test_gallery_predictions_per_piece_from_a_usable_model(
    api: tuple[TestClient, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, world = api
    sim = simulate_account("mia", days=120, end=NOW, seed=7, posts_per_day=2)  # labelled simulated
    AnalyticsStore(world.engine).record(sim.observations)
    path = f"/api/v1/analytics/batches/{world.batch_id}/predictions"
    with client:
        storage = client.app.state.contentforge.services.storage  # type: ignore[attr-defined]
        reads: list[str] = []
        original = storage.get
        monkeypatch.setattr(storage, "get", lambda key: reads.append(key) or original(key))
        shown = client.get(path, headers=AUTH).json()
        assert sorted(reads) == ["content/mia/p00.png", "content/mia/p01.png", "content/mia/p02.png"]
        again = client.get(path, headers=AUTH).json()["predictions"]
        assert {k: v["predicted"] for k, v in again.items()} == {
            k: v["predicted"] for k, v in shown["predictions"].items()
        }
        assert len(reads) == 3  # the images' features are cached by key and content digest
    assert shown["model"]["usable"] is True and shown["model"]["simulated"] is True, shown["model"]
    assert set(shown["predictions"]) == {"p00", "p01", "p02"}
    assert all(p["predicted"] > 0 and p["scheduled"] is False for p in shown["predictions"].values())
