"""``contentforge api serve --workers N``: bad values refused in one line, a real 2-worker server.

The served test starts the real command in a subprocess on loopback (uvicorn's supervisor and two
spawned workers) against the small world of ``tests/support/api.py``, so it needs the session's
Prefect server only for the command's start-up check (``connect``).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import httpx
import psutil
import pytest
from support.api import build_world
from typer.testing import CliRunner

from contentforge.config import Settings, get_settings
from contentforge_cli.api_listeners import bind_for_workers, spreads_connections
from contentforge_cli.main import app
from contentforge_cli.server import LocalServer

TOKEN = "serve-test-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _connections_on(process: psutil.Process, port: int) -> int:
    """Established connections the process holds on its listening ``port``."""
    return sum(
        1
        for connection in process.net_connections(kind="tcp")
        if connection.status == psutil.CONN_ESTABLISHED and connection.laddr and connection.laddr.port == port
    )


def _listener_inode(process: psutil.Process, port: int) -> int:
    """The inode of the socket the process listens on ``port`` with (Linux: ``/proc/PID/fd``)."""
    (listening,) = [
        connection
        for connection in process.net_connections(kind="tcp")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
    ]
    return os.stat(f"/proc/{process.pid}/fd/{listening.fd}").st_ino


async def _accepted_socket_options(listener: socket.socket) -> tuple[int, int]:
    """Serve ``listener`` with asyncio (as uvicorn does) and report an accepted connection's
    (``proto``, ``TCP_NODELAY``)."""
    seen: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()

    class Report(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.set_result((sock.proto, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Report, sock=listener)
    try:
        _reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        writer.close()
        return await asyncio.wait_for(seen, 10)
    finally:
        server.close()


def test_each_worker_opens_its_own_listener_with_tcp_nodelay() -> None:
    """What uvicorn's supervisor pickles into each spawned worker becomes that worker's own listener
    on the same port, and the connections it accepts have TCP_NODELAY (uvicorn's own socket, with
    ``proto`` 0, left Nagle on: 44 ms per keep-alive response)."""
    given = bind_for_workers("127.0.0.1", 0)
    try:
        port = given.getsockname()[1]
        assert port != 0
        in_worker = pickle.loads(ForkingPickler.dumps(given))  # as multiprocessing's spawn sends it
        try:
            assert in_worker.getsockname()[:2] == ("127.0.0.1", port)
            if spreads_connections():
                assert in_worker.fileno() != given.fileno()
                assert in_worker.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert asyncio.run(_accepted_socket_options(in_worker)) == (socket.IPPROTO_TCP, 1)
        finally:
            in_worker.close()
    finally:
        given.close()


def test_an_address_in_use_is_refused_even_by_another_api_server() -> None:
    """A port another program listens on is refused, and so is one another ``api serve`` holds
    with its own SO_REUSEPORT listeners: two servers never silently share an address."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError):
            bind_for_workers("127.0.0.1", other.getsockname()[1]).close()
    first = bind_for_workers("127.0.0.1", 0)
    worker = pickle.loads(ForkingPickler.dumps(first))
    worker.listen()  # as the worker's server does once its app is built
    try:
        with pytest.raises(OSError):
            bind_for_workers("127.0.0.1", first.getsockname()[1]).close()
    finally:
        worker.close()
        first.close()


def test_a_worker_that_finds_its_address_taken_stops_the_supervisor() -> None:
    """Taken after the command checked it: the worker exits with uvicorn's start-up failure code
    (the supervisor then stops) instead of failing, being restarted and failing again forever."""
    from uvicorn.config import STARTUP_FAILURE

    given = bind_for_workers("127.0.0.1", 0)
    try:
        if not spreads_connections():
            pytest.skip("one shared listener: workers bind nothing of their own")
        address, sent = given.getsockname(), ForkingPickler.dumps(given)  # as spawn sends it to a worker
        given.close()  # the window in which another program takes the port
        with socket.socket() as other:
            other.bind(address)
            other.listen()
            with pytest.raises(SystemExit) as stopped:
                pickle.loads(sent)
        assert stopped.value.code == STARTUP_FAILURE
    finally:
        given.close()


def test_a_wildcard_ipv6_address_still_takes_ipv4_clients() -> None:
    """``--host ::`` answered IPv4 clients through uvicorn's socket, and still does (no V6ONLY)."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        given = bind_for_workers("::", 0)
    except OSError as exc:
        pytest.skip(f"cannot bind :: here: {exc}")
    try:
        in_worker = pickle.loads(ForkingPickler.dumps(given))
        in_worker.listen()
        try:
            with socket.create_connection(("127.0.0.1", given.getsockname()[1]), timeout=5):
                pass
        finally:
            in_worker.close()
    finally:
        given.close()


def test_serving_on_a_taken_port_is_one_line(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import contentforge_cli.runtime

    monkeypatch.setattr(
        contentforge_cli.runtime,
        "connect",
        lambda _settings: LocalServer("http://127.0.0.1:1/api", "http://127.0.0.1:1", None, started=False),
    )
    monkeypatch.setenv("CONTENTFORGE_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = CliRunner().invoke(app, ["api", "serve", "--workers", "2", "--port", str(port)])
    assert done.exit_code == 2, done.output
    assert (
        done.output.strip().splitlines()[-1]
        == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


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
        # A burst of connections is spread over both workers (one listener each, SO_REUSEPORT), not
        # all accepted by whichever worker woke first (uvicorn's one shared socket).
        burst = [httpx.Client(base_url=base, headers=headers, timeout=30) for _ in range(16)]
        try:
            with ThreadPoolExecutor(len(burst)) as pool:
                answers = list(pool.map(lambda client: client.get("/api/v1/personas/mia"), burst))
            assert [answer.status_code for answer in answers] == [200] * len(burst)
            if spreads_connections():
                # Each worker listens on a socket of its own (one shared socket: the same inode in
                # both), and the kernel hashed the connections over them (all 16 in one: 2**-15).
                assert len({_listener_inode(worker, port) for worker in workers}) == len(workers)
                held = [_connections_on(worker, port) for worker in workers]
                assert sum(held) >= len(burst) and min(held) >= 1, held
        finally:
            for client in burst:
                client.close()
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
