"""The review gallery in a real browser: headless Chromium (Debian's chromium + chromium-driver) drives
the page served by uvicorn on a loopback port; clicks must change the pieces in the database.

Skips with a reason when the browser, its driver or selenium is missing, except with ``CI=true``,
where it fails instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import support.browser
from sqlalchemy import select, update
from support.api import MARKUP_HOOK, World, add_variations, build_world
from support.browser import browser_or_skip, headless_chromium, served_app, wait

from contentforge.config import Settings
from contentforge.db.models import PieceORM, ReviewDecisionORM
from contentforge.domain.models import PieceStatus
from contentforge_api import create_app

TOKEN = "gallery-token-0123456789"


@pytest.fixture()
def world(settings_env: Path) -> World:
    settings = Settings(_env_file=None, data_dir=settings_env, api_token=TOKEN, image_profile="fixed-latency")
    return build_world(settings)


@pytest.fixture()
def server_url(world: World) -> Iterator[str]:
    with served_app(create_app(world.settings), "gallery-uvicorn") as url:
        yield url


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    with headless_chromium(tmp_path / "chromium-profile", "--window-size=1400,1000") as driver:
        yield driver


def _card(driver: Any, piece_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'article[data-piece-id="{piece_id}"]')


def _sign_in(driver: Any, token: str, reviewer: str = "") -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "token").send_keys(token)
    name = driver.find_element(By.ID, "reviewer")
    name.clear()
    name.send_keys(reviewer)
    driver.find_element(By.ID, "use-token").click()


def _decisions(world: World) -> list[tuple[str, str, str, str]]:
    with world.repo.engine.connect() as connection:
        rows = connection.execute(
            select(
                ReviewDecisionORM.piece_id,
                ReviewDecisionORM.decision,
                ReviewDecisionORM.reviewer,
                ReviewDecisionORM.reason,
            ).order_by(ReviewDecisionORM.id)
        ).all()
    return [tuple(row) for row in rows]


@pytest.mark.slow
def test_gallery_renders_images_and_review_clicks_change_the_pieces(
    browser: Any, server_url: str, world: World
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(f"{server_url}/gallery/batches/b1")
    assert "Enter the API token" in driver.find_element(By.ID, "status").text

    # A wrong token loads nothing and says why.
    _sign_in(driver, "not-the-token")
    wait(driver, lambda d: "invalid bearer token" in d.find_element(By.ID, "status").text, "no 401 message")
    assert driver.find_elements(By.CSS_SELECTOR, "article.piece") == []

    _sign_in(driver, TOKEN, reviewer="Rita")
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.piece")) == 6, "pieces not rendered")
    assert driver.find_element(By.ID, "token").get_attribute("value") == ""  # not left in the form
    assert driver.execute_script("return sessionStorage.getItem('contentforge.token')") == TOKEN

    # Every stored image is fetched with the token and really decodes (naturalWidth > 0).
    def images(d: Any) -> list[dict[str, Any]]:
        return d.execute_script(
            "return [...document.querySelectorAll('article.piece')].map(a => {"
            " const i = a.querySelector('img');"
            " return {id: a.dataset.pieceId, src: i.getAttribute('src') || '', complete: i.complete,"
            " width: i.naturalWidth, height: i.naturalHeight}; });"
        )

    wait(
        driver,
        lambda d: all(i["complete"] and i["width"] > 0 for i in images(d) if i["id"] != "b1-005"),
        "images did not load",
    )
    shown = {i["id"]: i for i in images(driver)}
    assert all(shown[f"b1-{n:03d}"]["src"].startswith("blob:") for n in range(5))
    assert {(i["width"], i["height"]) for k, i in shown.items() if k != "b1-005"} == {(64, 48)}
    assert shown["b1-005"]["src"] == "" and shown["b1-005"]["width"] == 0  # planned: no image yet

    # Hooks, tier, scores, cost and status are on the cards; markup in a hook stays text.
    first = _card(driver, "b1-000")
    assert first.find_element(By.CSS_SELECTOR, ".hooks li").text == MARKUP_HOOK
    assert first.find_elements(By.CSS_SELECTOR, ".hooks img, .hooks b") == []
    assert driver.title.startswith("ContentForge review") and "pwned" not in driver.title
    assert first.find_element(By.CSS_SELECTOR, ".tier").text == "tier safe"
    assert first.find_element(By.CSS_SELECTOR, ".cost").text == "$0.0030"
    assert "sexual: 0.050" in first.find_element(By.CSS_SELECTOR, ".scores").text
    assert _card(driver, "b1-004").find_element(By.CSS_SELECTOR, ".status").text == "rejected"
    # Only pieces waiting for review have buttons.
    assert len(driver.find_elements(By.CSS_SELECTOR, "button.approve")) == 2
    assert "waiting for review" in driver.find_element(By.ID, "summary").text

    # Approve the first piece waiting for review.
    assert world.repo.get_piece("b1-002").status is PieceStatus.needs_review
    _card(driver, "b1-002").find_element(By.CSS_SELECTOR, "button.approve").click()
    wait(driver, lambda d: _card(d, "b1-002").get_attribute("data-status") == "ready", "approve not shown")
    assert world.repo.get_piece("b1-002").status is PieceStatus.ready
    assert _decisions(world) == [("b1-002", "approve", "Rita (api token)", "")]
    assert "approved by Rita (api token)" in _card(driver, "b1-002").text
    assert _card(driver, "b1-002").find_elements(By.CSS_SELECTOR, "button.approve") == []

    # Reject the other: a reason is asked for, and an empty one is refused before any request.
    card = _card(driver, "b1-003")
    card.find_element(By.CSS_SELECTOR, "button.reject").click()
    reason = card.find_element(By.CSS_SELECTOR, "textarea.reason")
    wait(driver, lambda d: reason.is_displayed(), "reason field not shown")
    card.find_element(By.CSS_SELECTOR, "button.confirm-reject").click()
    assert "needs a reason" in card.find_element(By.CSS_SELECTOR, ".message").text
    assert world.repo.get_piece("b1-003").status is PieceStatus.needs_review
    reason.send_keys("Off-brand <b>pose</b>")
    card.find_element(By.CSS_SELECTOR, "button.confirm-reject").click()
    wait(driver, lambda d: _card(d, "b1-003").get_attribute("data-status") == "rejected", "reject not shown")
    piece = world.repo.get_piece("b1-003")
    assert piece.status is PieceStatus.rejected and piece.tier is None
    assert _decisions(world)[-1] == ("b1-003", "reject", "Rita (api token)", "Off-brand <b>pose</b>")
    assert driver.find_elements(By.CSS_SELECTOR, "button.approve") == []

    # A reload keeps the decisions (they are in the database, not just on the page).
    driver.refresh()
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.piece")) == 6, "reload failed")
    assert _card(driver, "b1-002").get_attribute("data-status") == "ready"
    assert _card(driver, "b1-003").get_attribute("data-status") == "rejected"


def _top_in_window(driver: Any, piece_id: str) -> bool:
    """The card's top edge is inside the window (within a pixel: scrolling lands on fractions)."""
    return bool(
        driver.execute_script(
            "const card = document.getElementById('piece-' + arguments[0]);"
            " const top = card ? card.getBoundingClientRect().top : -1e9;"
            " return top >= -1 && top < window.innerHeight;",
            piece_id,
        )
    )


def _in_view(driver: Any, piece_id: str) -> bool:
    """The card is shown as the one jumped to: marked, focused, and its top inside the window."""
    card = driver.execute_script("return document.getElementById('piece-' + arguments[0])", piece_id)
    return (
        card is not None
        and "jumped" in (card.get_attribute("class") or "").split()
        and driver.switch_to.active_element == card
        and _top_in_window(driver, piece_id)
    )


@pytest.mark.slow
def test_a_variation_card_names_its_parent_and_the_link_reaches_the_parent_card(
    browser: Any, server_url: str, world: World
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.set_window_size(520, 700)  # one card per row: reaching a card needs a scroll
    plan = add_variations(world, 2)
    driver.get(f"{server_url}/gallery/batches/{plan.batch_id}")
    _sign_in(driver, TOKEN)
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.piece")) == 2, "not shown")
    line = _card(driver, plan.piece_ids[1]).find_element(By.CSS_SELECTOR, ".variation-of")
    assert line.text.strip() == "variation of v0-000"
    link = line.find_element(By.CSS_SELECTOR, "a.parent-link")
    assert link.get_attribute("href") == f"{server_url}/api/v1/pieces/v0-000"  # not on this page

    # The parent is in another batch: the link opens that batch's gallery at the parent's card.
    driver.execute_script("arguments[0].scrollIntoView()", link)
    link.click()
    wait(driver, lambda d: d.current_url == f"{server_url}/gallery/batches/v0#piece-v0-000", "not opened")
    wait(driver, lambda d: _in_view(d, "v0-000"), "the parent's card was not shown")
    assert _card(driver, "v0-000").find_elements(By.CSS_SELECTOR, ".variation-of") == []

    # A parent on the same page is scrolled to, without leaving it.
    with world.repo.engine.begin() as connection:
        connection.execute(update(PieceORM).where(PieceORM.id == "b1-005").values(parent_piece_id="b1-000"))
    driver.get(f"{server_url}/gallery/batches/b1")
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.piece")) == 6, "b1 not shown")
    assert [c.text for c in driver.find_elements(By.CSS_SELECTOR, ".variation-of")] == ["variation of b1-000"]
    link = _card(driver, "b1-005").find_element(By.CSS_SELECTOR, "a.parent-link")
    assert link.get_attribute("href") == f"{server_url}/gallery/batches/b1#piece-b1-000"
    driver.execute_script("arguments[0].scrollIntoView()", link)
    assert not _top_in_window(driver, "b1-000")
    link.click()
    wait(driver, lambda d: _in_view(d, "b1-000"), "the parent's card was not scrolled to")
    assert driver.current_url == f"{server_url}/gallery/batches/b1#piece-b1-000"


def test_missing_browser_skips_locally_and_fails_on_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import _pytest.outcomes

    monkeypatch.setattr(support.browser, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("CI", "false")
    with pytest.raises(_pytest.outcomes.Skipped, match="no-chromium is missing"):
        browser_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(_pytest.outcomes.Failed, match="apt-get install chromium chromium-driver"):
        browser_or_skip()
