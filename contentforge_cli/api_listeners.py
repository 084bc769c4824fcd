"""The listening sockets of ``contentforge api serve --workers N``: one per worker, spread by the kernel.

uvicorn's own supervisor (``uvicorn.run(..., workers=N)``) binds one socket in the parent and hands
that socket to every worker. Measured with ``benchmarks/api_reads.py`` (issue 18), that cost twice:

- The socket is created with ``proto`` 0. Accepted connections inherit it, and asyncio sets
  ``TCP_NODELAY`` only on connections whose ``proto`` is ``IPPROTO_TCP``, so Nagle stayed on: every
  keep-alive response after the first waited for the client's delayed ACK, 44 ms per request even
  for ``/health`` (uvicorn issue Kludex/uvicorn#3149, open). One process (``--workers 1``) was not
  affected: asyncio builds that listener itself, from ``getaddrinfo``.
- The workers race to accept from the one socket, and asyncio accepts every pending connection on
  each wake-up, so a burst of clients all lands on one worker: 8 clients kept one worker busy and
  left the other idle.

So each worker opens a listener of its own on the same address with ``SO_REUSEPORT`` and the
kernel spreads new connections over them (Linux hashes each connection to one listener). The
supervisor stays uvicorn's (it restarts a worker that dies and stops them all on SIGTERM): it is
given a ``WorkerListener``, which pickles as its address, so each spawned worker unpickles it as
a new listener of its own. Where ``SO_REUSEPORT`` does not spread connections (not Linux), the
workers share one listener as before, still created with ``IPPROTO_TCP``.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

from uvicorn.config import STARTUP_FAILURE

BACKLOG = 2048
"""uvicorn's default listen backlog."""

logger = logging.getLogger("uvicorn.error")


def spreads_connections() -> bool:
    """Whether the kernel balances connections over ``SO_REUSEPORT`` listeners (Linux does)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class WorkerListener(socket.socket):
    """A ``SO_REUSEPORT`` TCP socket that pickles as its address, so each worker opens its own.

    The parent's instance is bound (the address is checked, and port 0 resolved, before any worker
    starts) but never listens, so the kernel hands it no connections.
    """

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return open_listener, (self.family, self.getsockname()[:2])


def _tcp_socket(kind: type[socket.socket], family: int) -> socket.socket:
    """As uvicorn makes its listener (``SO_REUSEADDR``; ``::`` still takes IPv4 clients), but with
    ``IPPROTO_TCP``: see the module docstring."""
    sock = kind(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def open_listener(family: int, address: tuple[Any, ...]) -> socket.socket:
    """One worker's own socket on ``address``, beside the other workers' (``SO_REUSEPORT``).

    Bound, not listening: the worker's server listens once its app is built, so a worker that is
    still starting (after a crash, or while another already serves) is handed no connections to
    hold. When the address cannot be bound any more (another program took it after the command
    checked it), the worker exits with uvicorn's start-up failure code, which stops the supervisor
    instead of restarting the worker forever.
    """
    sock = _tcp_socket(socket.socket, family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        logger.error("cannot listen on %s: %s", address, exc.strerror or exc)
        sys.exit(STARTUP_FAILURE)
    return sock


def bind_for_workers(host: str, port: int) -> socket.socket:
    """The socket to give uvicorn's supervisor for ``host:port``; ``OSError`` if it cannot be bound.

    A ``WorkerListener`` where the kernel spreads connections over listeners, else one shared
    listening socket.
    """
    # As uvicorn chooses: IPv6 for an address with a colon, else IPv4 ("localhost" binds 127.0.0.1).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address: tuple[Any, ...] = (host.strip("[]"), port)
    if not spreads_connections():
        shared = _tcp_socket(socket.socket, family)
        try:
            shared.bind(address)
            shared.listen(BACKLOG)
        except OSError:
            shared.close()
            raise
        shared.set_inheritable(True)
        return shared
    # Bound without SO_REUSEPORT first: an address another server listens on (even one with
    # SO_REUSEPORT, such as a second `api serve`) is refused instead of silently shared with it.
    with _tcp_socket(socket.socket, family) as probe:
        probe.bind(address)
        address = probe.getsockname()  # port 0 resolved once, for every worker
    sock = _tcp_socket(WorkerListener, family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock
