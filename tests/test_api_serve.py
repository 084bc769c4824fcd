"""``contentforge api serve --workers N``: bad values refused in one line, a real 2-worker server.

The served test starts the real command in a subprocess on loopback (uvicorn's supervisor and two
spawned workers) against the small world of ``tests/support/api.py``, so it needs the session's
Prefect server only for the command's start-up check (``connect``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from support.api import build_world
from typer.testing import CliRunner

from contentforge.config import Settings, get_settings
from contentforge_cli.main import app

TOKEN = "serve-test-token"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("value", ["0", "-2", "65"])
def test_bad_worker_counts_are_one_line_before_anything_starts(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    import contentforge_cli.runtime

    def must_not_connect(*_args: object) -> None:
        raise AssertionError("a refused --workers must not reach the Prefect server")

    monkeypatch.setattr(contentforge_cli.runtime, "connect", must_not_connect)
    monkeypatch.setenv("CONTENTFORGE_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    done = CliRunner().invoke(app, ["api", "serve", "--workers", value])
    assert done.exit_code == 2
    assert done.output.strip().splitlines() == [f"error: --workers must be between 1 and 64, not {value}"]


def test_two_workers_serve_one_database(settings_env: Path, prefect_server: str) -> None:
    """Two worker processes answer on one port; a persona created through one is read through any."""
    world = build_world(Settings(_env_file=None))  # type: ignore[call-arg]  # the env's data dir
    port = _free_port()
    env = dict(os.environ, CONTENTFORGE_API_TOKEN=TOKEN, PREFECT_API_URL=prefect_server)
    command = [sys.executable, "-m", "contentforge_cli.main", "api", "serve", "--workers", "2"]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        deadline = time.monotonic() + 300  # three interpreters import the API: minutes on a loaded machine
        while True:
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start: {server.communicate(timeout=30)[0][-2000:]}")
            time.sleep(0.25)
        # Both workers up (the supervisor's children, besides multiprocessing's resource tracker).
        workers = [
            p for p in psutil.Process(server.pid).children() if "--multiprocessing" in " ".join(p.cmdline())
        ]
        assert len(workers) == 2 and len({p.pid for p in workers}) == 2

        created = httpx.post(
            f"{base}/api/v1/personas",
            headers=headers,
            json={
                "id": "mia",
                "name": "Mia Serve",
                "niche": "fitness",
                "appearance": "athletic woman",
                "personality_traits": ["calm"],
                "interests": ["rowing"],
                "tone": "direct",
                "platforms": ["instagram"],
            },
            timeout=30,
        )
        assert created.status_code == 201, created.text
        with (
            httpx.Client(base_url=base, headers=headers, timeout=30) as first,
            httpx.Client(base_url=base, headers=headers, timeout=30) as second,
        ):  # two connections, which the kernel may hand to either worker
            for client in (first, second) * 5:
                assert client.get("/api/v1/personas/mia").json()["name"] == "Mia Serve"
                page = client.get("/api/v1/personas/ava/content", params={"limit": 3, "offset": 1}).json()
                assert page["total"] == 8  # b2 (newest) then b1: the page crosses the batches' boundary
                assert [p["id"] for p in page["items"]] == ["b2-001", "b1-000", "b1-001"]
        unauthenticated = httpx.get(f"{base}/api/v1/personas/mia", timeout=30)
        assert unauthenticated.status_code == 401  # every worker checks the token
        assert world.repo.get_persona("mia") is not None  # written to the one database every worker reads
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            output = server.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            server.kill()
            output = server.communicate()[0]
    assert server.returncode == 0, output[-2000:]
    assert "2 worker processes" in output
    assert psutil.wait_procs(workers, timeout=30)[1] == [], "no worker outlives the server"


@pytest.mark.postgres
def test_json_columns_read_through_orjson_are_what_json_reads(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's PostgreSQL JSON decoding (orjson) gives exactly ``json.loads``' values, edge cases too."""
    import json

    from sqlalchemy import create_engine

    from contentforge_api import app as api_app

    decoded: list[object] = []
    loads = api_app._json_loads
    monkeypatch.setattr(api_app, "_json_loads", lambda data: decoded.append(data) or loads(data))

    stored = [
        '{"hashtags": ["fitness", "caf\\u00e9"], "score": 0.1, "none": null, "flag": true}',
        '{"beyond_64_bits": 123456789012345678901234567890, "negative": -9223372036854775809}',
        '{"id": "0000000000000000000123"}',  # 19 digits inside a string: read by json, same value
        "[1e400]",  # PostgreSQL stores it, orjson refuses it, json reads infinity
        '"\\ud800"',  # a lone surrogate (json only: jsonb refuses it): the same
    ]
    engine = create_engine(pg_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE decoded (n int, v json, b jsonb)")
            for n, text in enumerate(stored):
                binary = None if "ud800" in text else text
                connection.exec_driver_sql("INSERT INTO decoded VALUES (%s, %s, %s)", (n, text, binary))
        api_app.decode_json_with_orjson(engine)
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT v, b, v::text, b::text FROM decoded ORDER BY n").all()
    finally:
        engine.dispose()
    assert len(rows) == len(stored)
    assert len(decoded) == 2 * len(stored) - 1, "every json and jsonb value went through the API's loader"
    for value, binary, text, binary_text in rows:
        assert repr(value) == repr(json.loads(text))
        assert binary_text is None or repr(binary) == repr(json.loads(binary_text))
    assert rows[1][0]["beyond_64_bits"] == 123456789012345678901234567890  # an int, not a float
