"""The gallery's conversations page in a real browser (headless Chromium, as test_gallery_browser.py):
a user's markup stays text, and take-over, a person's reply and hand-back change the database.

Skips with a reason when the browser, its driver or selenium is missing, except with ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import headless_chromium, served_app, wait

from contentforge.config import Settings
from contentforge.db.chat import ConversationStore
from contentforge.domain.models import Persona, Platform
from contentforge.services import Services
from contentforge_api import create_app

TOKEN = "chat-gallery-token-0123456789"
MARKUP = "<img src=x onerror=\"document.title='pwned'\"><b>hi</b> I'm 15"


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    with headless_chromium(tmp_path / "chromium-profile") as driver:
        yield driver


@pytest.fixture()
def served(settings_env: Path) -> Iterator[tuple[str, ConversationStore, str]]:
    settings = Settings(_env_file=None, data_dir=settings_env, api_token=TOKEN)
    services = Services.from_settings(settings)
    services.repository.upsert_persona(
        Persona(
            id="ava",
            name="Ava",
            niche="fitness",
            appearance="tall",
            personality_traits=["upbeat"],
            interests=["running"],
            tone="warm",
            platforms=[Platform.instagram],
        )
    )
    store = ConversationStore(services.sessions)
    inbound = store.record_inbound(persona_id="ava", platform="api", user_id="fan-1", text=MARKUP)
    store.set_state(
        inbound.conversation.id, "human", "possible minor: the message suggests the person is under 18"
    )
    with served_app(create_app(settings), "chat-gallery-uvicorn") as url:
        yield url, store, inbound.conversation.id


@pytest.mark.slow
def test_a_person_reads_takes_over_replies_and_hands_back_in_the_browser(
    browser: Any, served: tuple[str, ConversationStore, str]
) -> None:
    from selenium.webdriver.common.by import By

    url, store, conversation_id = served
    driver = browser
    driver.get(f"{url}/gallery/conversations")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "reviewer").send_keys("Rita")
    driver.find_element(By.ID, "use-token").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#conversation-list button"), "no conversations")
    driver.find_element(By.CSS_SELECTOR, "#conversation-list button").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".message.inbound"), "messages not shown")

    message = driver.find_element(By.CSS_SELECTOR, ".message.inbound")
    assert message.text.startswith(MARKUP)  # shown as text
    assert message.find_elements(By.CSS_SELECTOR, "img, b") == [] and "pwned" not in driver.title
    assert "possible minor" in driver.find_element(By.ID, "conversation").text

    driver.find_element(By.CSS_SELECTOR, ".actions textarea").send_keys("Hi, this is Rita from the team.")
    driver.find_element(By.XPATH, "//button[text()='Send reply']").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".message.outbound"), "reply not shown")
    [reply] = [m for m in store.messages(conversation_id) if m.direction == "outbound"]
    assert (reply.text, reply.source, reply.author, reply.status) == (
        "Hi, this is Rita from the team.",
        "human",
        "Rita (api token)",
        "sent",
    )

    driver.find_element(By.XPATH, "//button[text()='Hand back to the persona']").click()
    wait(driver, lambda d: d.find_elements(By.XPATH, "//button[text()='Take over']"), "no take-over button")
    assert store.conversation(conversation_id).state == "auto"
    driver.find_element(By.XPATH, "//button[text()='Take over']").click()
    wait(driver, lambda d: store.conversation(conversation_id).state == "human", "not taken over")
