"""Bearer-token authentication.

* ``CONTENTFORGE_API_TOKEN`` grants everything (identity ``api``); the optional
  ``CONTENTFORGE_API_READ_TOKEN`` grants reads only (identity ``read``): a write with it is 403, and
  so is anything that may run a paid model or moderation call (hooks, variations, calls to action,
  safety checks), refused before any provider is built: a token handed out to read dashboards
  cannot spend money.
* Tokens are compared with ``hmac.compare_digest`` on their SHA-256 digests (constant time, and the
  same length whatever the client sends); they are ``SecretStr`` and never logged or echoed.
* No token configured: ``create_app`` refuses unless ``insecure_local=True``, which the CLI allows
  only for a loopback bind (``--insecure-local``). Then every request is treated as the local user
  ``local`` but must come from a loopback client *and* carry a loopback ``Host`` header, so neither
  another machine nor a web page using DNS rebinding can reach it.
* Why a bearer header and not a cookie: browsers never attach an ``Authorization`` header on their
  own, so a page on another site cannot make a credentialed request (no CSRF). The gallery page
  keeps the token in ``sessionStorage`` (gone when the tab closes) and sends it from its script.

The reviewer recorded for a gallery decision is the token identity; a client may add a display
name in ``X-ContentForge-Reviewer`` (recorded as ``"<name> (<identity> token)"``) so decisions made
with one shared token still say who clicked.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass

from fastapi import Request
from pydantic import SecretStr

from contentforge_api.errors import ApiError

REVIEWER_HEADER = "X-ContentForge-Reviewer"
_REVIEWER_NAME = re.compile(r"^[\w .@'-]{1,80}$")
_LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True)
class Identity:
    """Who is calling: ``api`` (full token), ``read`` (read-only token) or ``local`` (insecure mode)."""

    name: str
    can_write: bool

    @property
    def can_spend(self) -> bool:
        """May this caller trigger a model or moderation call that may be paid? Only a writer may."""
        return self.can_write


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (with or without brackets)."""
    host = host.strip().strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class TokenAuth:
    """Checks the ``Authorization`` header of each request against the configured tokens."""

    def __init__(
        self, token: SecretStr | None, read_token: SecretStr | None = None, *, insecure_local: bool = False
    ) -> None:
        self._full = _digest(token.get_secret_value()) if token and token.get_secret_value() else None
        self._read = (
            _digest(read_token.get_secret_value()) if read_token and read_token.get_secret_value() else None
        )
        self.insecure_local = insecure_local and self._full is None

    @property
    def configured(self) -> bool:
        return self._full is not None

    def identify(self, request: Request) -> Identity:
        if self.insecure_local:
            client = request.client.host if request.client else ""
            host = _host_name(request.headers.get("host", ""))
            if not (is_loopback_host(client) and is_loopback_host(host)):
                raise ApiError(403, "this API runs without a token and answers loopback clients only")
            return Identity("local", can_write=True)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "missing bearer token: send 'Authorization: Bearer <CONTENTFORGE_API_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        sent = _digest(token.strip())
        # Both comparisons always run, so timing does not tell which token (if any) matched.
        full = hmac.compare_digest(sent, self._full or b"\0" * 32) and self._full is not None
        read = hmac.compare_digest(sent, self._read or b"\0" * 32) and self._read is not None
        if full:
            return Identity("api", can_write=True)
        if read:
            return Identity("read", can_write=False)
        raise ApiError(
            401, "invalid bearer token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )


def reviewer_for(identity: Identity, request: Request) -> str:
    """The reviewer name recorded with a decision: the token identity, plus an optional display name."""
    name = request.headers.get(REVIEWER_HEADER, "").strip()
    if not name:
        return identity.name
    if not _REVIEWER_NAME.fullmatch(name):
        raise ApiError(
            422,
            f"{REVIEWER_HEADER} must be 1-80 letters, digits, spaces or . @ ' - _",
            code="validation_error",
        )
    return f"{name} ({identity.name} token)"
