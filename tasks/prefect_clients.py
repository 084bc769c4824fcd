"""Prefect API clients that share one TLS context per process instead of building one each.

Why: Prefect builds a new ``ssl.SSLContext`` from its certificate bundle for every client it creates
(``PrefectClient.__init__``, certifi's ~150 certificates parsed again), whether or not the API is
https: 40 ms of CPU each on the 2-core development machine. ContentForge's processes create many
short-lived clients (every slot holder, every run a batch sends to the GPU workers, every bootstrap
call, every GPU worker run's claim), and a py-spy profile of three batch runs starting at once put 27 %
of their CPU in ``ssl.create_default_context`` (docs/benchmarks.md). Prefect uses a context passed as
``httpx_settings["verify"]`` as it is, so the context built here once (the same way Prefect builds it,
from the same settings) serves every client of the process.

Prefect's engines also make clients of their own: a task worker two per run (one for the run's
context, one for the engine), a flow run's process one per run and one more to load it.
``sync_client_context`` gives them one client of the process to reuse instead, through Prefect's own
``SyncClientContext``.

What is shared: httpcore sets the ALPN protocols on the context at every new TLS connection, the
same list for every client with the same HTTP/2 setting (part of the cache key); Prefect's own
context of a client is shared the same way by the threads that use that client. A certificate file
replaced in place (a rotated bundle) is read again: its modification time is part of the key.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, overload

import certifi
from prefect.client.orchestration import PrefectClient, SyncPrefectClient, get_client
from prefect.context import SyncClientContext
from prefect.settings import get_current_settings

_CONTEXTS: dict[tuple[bool, str, int, bool], ssl.SSLContext] = {}
_LOCK = threading.Lock()


def shared_tls_context() -> ssl.SSLContext:
    """This process's TLS context for the Prefect API under the current settings, built once.

    Built as Prefect builds one per client: unverified when ``PREFECT_API_TLS_INSECURE_SKIP_VERIFY``,
    else verifying against ``PREFECT_API_SSL_CERT_FILE`` or certifi's bundle.
    """
    api = get_current_settings().api
    cert_file = api.ssl_cert_file or certifi.where()
    try:
        modified = os.stat(cert_file).st_mtime_ns
    except OSError:  # Prefect's own build of the context reports it
        modified = 0
    key = (bool(api.tls_insecure_skip_verify), cert_file, modified, bool(api.enable_http2))
    with _LOCK:
        context = _CONTEXTS.get(key)
        if context is None:
            insecure = key[0]
            if insecure:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context = ssl.create_default_context(cafile=cert_file)
            _CONTEXTS[key] = context
        return context


@overload
def api_client(sync_client: Literal[True]) -> SyncPrefectClient: ...


@overload
def api_client(sync_client: Literal[False] = False) -> PrefectClient: ...


def api_client(sync_client: bool = False) -> Any:
    """``prefect.get_client`` with the process's shared TLS context: use it as ``get_client`` is used."""
    settings = {"verify": shared_tls_context()}
    if sync_client:
        return get_client(httpx_settings=settings, sync_client=True)
    return get_client(httpx_settings=settings, sync_client=False)


@contextmanager
def sync_client_context() -> Iterator[SyncPrefectClient]:
    """One sync client (with the shared TLS context) that Prefect's engine reuses for every run started
    in this context, as a flow run's tasks reuse their flow run's.

    Prefect's ``get_client(sync_client=True)`` and ``SyncClientContext.get_or_create()`` return the
    client of the current ``SyncClientContext`` when it was made without httpx settings; this one is
    constructed around a client made here (so it has none recorded), and is entered as Prefect enters
    its own (the client opened, the server's API version checked once). Prefect's task worker and
    flow engine run each run in a copy of the context that started them, so a ``serve`` or an engine
    started inside this block hands it to every run.
    """
    context = SyncClientContext.model_construct(client=api_client(sync_client=True))
    with context:
        yield context.client
