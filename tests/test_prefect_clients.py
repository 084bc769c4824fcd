"""Prefect API clients share one TLS context per process (tasks/prefect_clients.py).

Prefect parses its certificate bundle again for every client (40 ms of CPU each on the development
machine); ContentForge's processes create many clients, so they hand Prefect one context built once.
"""

from __future__ import annotations

import os
import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import (
    PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
    PREFECT_API_URL,
    PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED,
    temporary_settings,
)

from tasks import prefect_clients
from tasks.prefect_clients import api_client, shared_tls_context


@pytest.fixture
def contexts_built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ssl.SSLContext]]:
    """Every ``ssl.create_default_context`` call of the test, by Prefect or by the module; an empty cache."""
    built: list[ssl.SSLContext] = []
    original = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = original(*args, **kwargs)
        built.append(context)
        return context

    monkeypatch.setattr(ssl, "create_default_context", counting)
    monkeypatch.setattr(prefect_clients, "_CONTEXTS", {})
    never_connected = {
        PREFECT_API_URL: "http://127.0.0.1:9/api",
        PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED: False,
    }
    with temporary_settings(updates=never_connected):
        yield built


def _verify_context(client: Any) -> ssl.SSLContext:
    """The TLS context the client's connections use (httpx's transport keeps it in its pool)."""
    context = client._client._transport._pool._ssl_context
    assert isinstance(context, ssl.SSLContext)
    return context


def test_clients_of_a_process_share_one_tls_context(contexts_built: list[ssl.SSLContext]) -> None:
    sync_clients = [api_client(sync_client=True) for _ in range(3)]
    async_clients = [api_client() for _ in range(3)]

    assert len(contexts_built) == 1
    assert {id(_verify_context(client)) for client in sync_clients + async_clients} == {id(contexts_built[0])}
    assert contexts_built[0].verify_mode is ssl.CERT_REQUIRED and contexts_built[0].check_hostname


def test_prefect_alone_builds_one_per_client(contexts_built: list[ssl.SSLContext]) -> None:
    """What the module saves: the same three clients from Prefect build three contexts."""
    for _ in range(3):
        get_client(sync_client=True)

    assert len(contexts_built) == 3


def test_the_insecure_setting_is_honoured_and_kept_apart(contexts_built: list[ssl.SSLContext]) -> None:
    verified = shared_tls_context()
    with temporary_settings(updates={PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        insecure = _verify_context(api_client(sync_client=True))

    assert insecure is not verified
    assert insecure.verify_mode is ssl.CERT_NONE and not insecure.check_hostname
    assert verified.verify_mode is ssl.CERT_REQUIRED  # the shared verified context was not changed
    assert shared_tls_context() is verified


def test_a_certificate_bundle_replaced_in_place_is_read_again(
    contexts_built: list[ssl.SSLContext], tmp_path: Path
) -> None:
    import certifi
    from prefect.settings import PREFECT_API_SSL_CERT_FILE

    bundle = tmp_path / "ca.pem"
    shutil.copy(certifi.where(), bundle)
    with temporary_settings(updates={PREFECT_API_SSL_CERT_FILE: str(bundle)}):
        first = shared_tls_context()
        assert shared_tls_context() is first
        os.utime(bundle, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))  # rotated: a new file
        assert shared_tls_context() is not first
    assert len(contexts_built) == 2


def test_prefect_engines_reuse_the_client_of_a_sync_client_context(
    contexts_built: list[ssl.SSLContext],
) -> None:
    """What a task worker's run does before its task (hydrate the sender's context, get the engine's
    client) builds no client and no TLS context of its own inside ``sync_client_context``."""
    from prefect.context import SyncClientContext, hydrated_context, serialize_context

    from tasks.prefect_clients import sync_client_context

    sent = serialize_context()  # what a run's sender stores with its parameters
    with sync_client_context() as shared:
        built_before_runs = len(contexts_built)
        with hydrated_context(sent), SyncClientContext.get_or_create() as engine_context:
            assert get_client(sync_client=True) is shared
            assert engine_context.client is shared
        assert len(contexts_built) == built_before_runs

    assert built_before_runs == 1
    # Outside it, the same steps build two clients, each with a TLS context of its own.
    with hydrated_context(sent), SyncClientContext.get_or_create():
        pass
    assert len(contexts_built) == 1 + 2
