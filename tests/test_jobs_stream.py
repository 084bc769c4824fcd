"""``GET /api/v1/jobs/{id}/stream`` read with httpx from a live uvicorn server, as a browser would.

A real batch flow (labelled fixed-latency images, offline hooks and moderation) runs in-process against
the session's Prefect server while the test reads its events until the final state; a second reader
drops the connection part-way and reconnects with ``Last-Event-ID``: together they see every event
exactly once.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from contentforge.config import get_settings
from contentforge.personas import sample_persona

TOKEN = "stream-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PIECES = 10

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]  # real batch runs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_api(settings_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from contentforge_api.app import create_app
    from tasks import resources

    monkeypatch.setenv("CONTENTFORGE_API_TOKEN", TOKEN)
    monkeypatch.setenv("CONTENTFORGE_IMAGE_PROFILE", "fixed-latency")
    monkeypatch.setenv("CONTENTFORGE_FIXED_LATENCY_S", "0.4")
    get_settings.cache_clear()
    resources.repository().upsert_persona(sample_persona())
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(get_settings()), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="jobs-stream-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _start_batch(base: str) -> tuple[str, str, threading.Thread]:
    """Run a real batch flow in a thread; returns its job id (found through the API), batch id, thread."""
    from prefect import tags

    from flows.produce_content_batch import produce_content_batch

    batch_id = f"stream-{uuid.uuid4().hex[:8]}"

    def run() -> None:
        with tags(f"batch:{batch_id}"):
            produce_content_batch("mia-fit", num_pieces=PIECES, batch_id=batch_id, seed=2)

    thread = threading.Thread(target=run, name="stream-batch", daemon=True)
    thread.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        jobs = httpx.get(f"{base}/api/v1/jobs", headers=AUTH, params={"batch": batch_id}).json()["jobs"]
        if jobs:
            return jobs[0]["id"], batch_id, thread
        time.sleep(0.2)
    pytest.fail("the batch run never appeared as a job")


def _events(response: httpx.Response, stop_after: int | None = None) -> Iterator[dict[str, Any]]:
    """Parse the SSE wire format: one dict per event (comments come as ``{"comment": ...}``)."""
    event: dict[str, Any] = {}
    seen = 0
    for line in response.iter_lines():
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif line.startswith("event: "):
            event["event"] = line.removeprefix("event: ")
        elif line.startswith("data: "):
            event["data"] = json.loads(line.removeprefix("data: "))
        elif line.startswith("id: "):
            event["id"] = line.removeprefix("id: ")
        elif line == "" and event:
            yield event
            seen += 1
            event = {}
            if stop_after is not None and seen >= stop_after:
                return


def _read(
    base: str, job_id: str, *, last_id: str | None = None, stop_after: int | None = None
) -> list[dict[str, Any]]:
    headers = dict(AUTH, **({"Last-Event-ID": last_id} if last_id else {}))
    with httpx.stream("GET", f"{base}/api/v1/jobs/{job_id}/stream", headers=headers, timeout=120) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [e for e in _events(response, stop_after) if "comment" not in e]


def _key(event: dict[str, Any]) -> tuple[str, Any]:
    data = event["data"]
    if event["event"] == "piece":
        return "piece", data["index"]
    if event["event"] == "progress":
        return "progress", data["progress"]
    if event["event"] == "state":
        return "state", (data["name"], data["timestamp"])
    return event["event"], None


def test_a_live_stream_follows_a_batch_to_its_end_and_resumes_without_duplicates(live_api: str) -> None:
    job_id, batch_id, thread = _start_batch(live_api)
    first_part = _read(live_api, job_id, stop_after=4)  # the connection drops part-way
    rest = _read(live_api, job_id, last_id=first_part[-1]["id"])
    whole = _read(live_api, job_id)  # a reader who stayed from the start to the end
    thread.join(120)

    for events in (first_part + rest, whole):
        keys = [_key(e) for e in events]
        assert len(keys) == len(set(keys)), f"no event twice: {keys}"
        assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "completed"
        assert events[-1]["data"]["subject"]["batch"] == batch_id
        pieces = sorted(e["data"]["index"] for e in events if e["event"] == "piece")
        assert pieces == list(range(PIECES)), "every piece's finish, once"
        progress = [e["data"]["progress"] for e in events if e["event"] == "progress"]
        assert progress == sorted(progress) and progress[-1] == 100
        states = [e["data"]["status"] for e in events if e["event"] == "state"]
        assert states[0] in ("pending", "running") and states[-1] == "completed" and "running" in states
        ids = [e["id"] for e in events]
        assert len(ids) == len(set(ids)), "every event id differs"
    # Progress is sampled when each reader polls; states and pieces are stored facts, the same for both.
    facts = lambda events: {_key(e) for e in events if e["event"] in ("state", "piece", "end")}  # noqa: E731
    assert facts(first_part + rest) == facts(whole), "the resumed reader saw what the patient reader saw"

    after_end = _read(live_api, job_id, last_id=whole[-1]["id"])
    assert after_end == [], "reconnecting after the end sends nothing again"


def test_heartbeats_bad_event_ids_and_unknown_jobs(live_api: str) -> None:
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(Flow(lambda: None, name="publish-due"), state=Scheduled())
    url = f"{live_api}/api/v1/jobs/{run.id}/stream"
    comments: list[str] = []
    started = time.monotonic()
    with httpx.stream("GET", url, headers=AUTH, params={"heartbeat_s": 1}, timeout=30) as response:
        assert response.status_code == 200
        for event in _events(response):
            if "comment" in event:
                comments.append(event["comment"])
                if len(comments) == 2:
                    break
            else:
                assert event["event"] == "state" and event["data"]["status"] == "scheduled"
    assert comments == ["heartbeat", "heartbeat"] and time.monotonic() - started < 10

    bad = httpx.get(url, headers=dict(AUTH, **{"Last-Event-ID": "oops"}))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    missing = httpx.get(f"{live_api}/api/v1/jobs/{uuid.uuid4()}/stream", headers=AUTH)
    assert missing.status_code == 404
    assert httpx.get(url).status_code == 401


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium as in test_gallery_browser.py (skips without it, fails under CI=true)."""
    import os

    problems = [
        f"{p} is missing" for p in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not Path(p).exists()
    ]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        problems.append("selenium is not installed")
    if problems:
        reason = "headless Chromium unavailable: " + "; ".join(problems)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_gallery_follows_a_running_batch_through_the_stream(live_api: str, chromium: Any) -> None:
    """The page shows pieces as they finish, and the end of the run, without reloading or polling."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, batch_id, thread = _start_batch(live_api)
    deadline = time.monotonic() + 60
    while httpx.get(f"{live_api}/api/v1/batches/{batch_id}", headers=AUTH).status_code != 200:
        assert time.monotonic() < deadline, "the batch row never appeared"
        time.sleep(0.1)  # the gallery link exists once the run has taken its batch
    chromium.get(f"{live_api}/gallery/batches/{batch_id}")
    chromium.find_element(By.ID, "token").send_keys(TOKEN)
    chromium.find_element(By.ID, "use-token").click()
    seen: list[str] = []

    def ended(driver: Any) -> bool:
        seen.append(driver.find_element(By.ID, "status").text)
        return "Batch run completed" in seen[-1]

    try:
        WebDriverWait(chromium, 120, poll_frequency=0.2).until(ended)
    except Exception:
        pytest.fail(f"the page never showed the end; its status lines: {list(dict.fromkeys(seen))}")
    cards = chromium.find_elements(By.CSS_SELECTOR, "article.piece")
    assert len(cards) == PIECES
    assert all(card.get_attribute("data-status") != "planned" for card in cards), "cards updated live"
    thread.join(60)
