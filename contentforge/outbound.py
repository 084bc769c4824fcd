"""Where ContentForge may send requests: one policy for every URL a user configures or a page names.

Every outbound destination (webhooks, the notify URL, publisher API base URLs, the Replicate, OpenAI,
Anthropic and local LLM base URLs, brand research pages) goes through the same checks:

- Only ``http``/``https``, a host, and no credentials in the URL (``http://public@127.0.0.1/`` is
  refused for its credentials before its host is even looked at).
- The host is resolved **once** per request and **every** address it resolves to is checked; any
  private, loopback, link-local (cloud metadata at 169.254.169.254), multicast, reserved, shared
  (100.64/10) or unspecified address refuses the request. IPv4 addresses hidden in IPv6 ones
  (``::ffff:127.0.0.1``, 6to4, Teredo, NAT64) count as the IPv4 address; numeric spellings such as
  ``2130706433`` or ``0x7f.1`` are whatever the system resolver turns them into (127.0.0.1: refused).
- The connection goes to an address that was checked, never to a second lookup's answer: the request
  names the pinned IP, the ``Host`` header keeps the configured name, and httpx's ``sni_hostname``
  extension keeps TLS SNI and certificate verification on that name (DNS rebinding reaches nothing).
- Redirects are requests like any other: each hop goes through the same check and pinning.

Private destinations are refused unless opted in with ``CONTENTFORGE_ALLOW_PRIVATE_URLS``: a comma
list of the URL settings that may point at a private address (``local_llm_base_url`` for llama.cpp or
Ollama on localhost), or ``*`` for all of them (tests, an intranet you trust). A refusal is one line
naming the setting and the opt-in (``OutboundRefused``, an ``InvalidInput``).

``PinnedTransport`` is the mechanism for httpx clients (and the SDKs built on httpx); brand research
pins each hop itself with ``send_pinned`` because it checks robots.txt between hops.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

import httpx

from contentforge.config import ALLOW_ALL, URL_SETTINGS, Settings, get_settings, parse_allow_private
from contentforge.errors import InvalidInput

Resolver = Callable[[str, int], list[str]]

OPT_IN_VARIABLE = "CONTENTFORGE_ALLOW_PRIVATE_URLS"

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundRefused(InvalidInput):
    """A URL ContentForge was about to send a request to is refused; the message names the setting."""

    def __init__(self, message: str, *, url: str, setting: str) -> None:
        super().__init__(message)
        self.url = url
        self.setting = setting


class Unresolvable(OSError):
    """The host of a URL does not resolve (a network failure, not a refusal)."""


def resolve_host(host: str, port: int) -> list[str]:
    """Every IP address ``host`` resolves to (IPv4 and IPv6), in the resolver's order of preference."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo client, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(ip: str) -> bool:
    """False for private, loopback, link-local, multicast, reserved, unspecified and shared addresses."""
    address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            address = embedded
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED)
    )


def allowed_private(settings: Settings | None) -> frozenset[str]:
    """The setting names ``CONTENTFORGE_ALLOW_PRIVATE_URLS`` opts in (``*``: all of them)."""
    if settings is None:
        settings = get_settings()
    return parse_allow_private(settings.allow_private_urls)


@dataclass(frozen=True)
class OutboundPolicy:
    """The checks for one destination setting; ``setting`` and ``opt_in`` are what refusals name."""

    setting: str
    """What the URL came from, as the user knows it: ``CONTENTFORGE_WEBHOOK_URL``, ``brand research``."""
    allow_private: bool = False
    opt_in: str = ""
    """How to allow a private destination; default: ``CONTENTFORGE_ALLOW_PRIVATE_URLS=<field>``."""
    resolver: Resolver | None = None
    """``None``: ``resolve_host`` of this module, looked up at call time."""

    @classmethod
    def for_setting(cls, name: str, settings: Settings | None = None) -> OutboundPolicy:
        """The policy of URL setting ``name`` (a ``Settings`` field); default ``settings``: the process's."""
        if name not in URL_SETTINGS:
            raise ValueError(f"{name!r} is not an outbound URL setting ({', '.join(URL_SETTINGS)})")
        allowed = allowed_private(settings)
        return cls(
            setting=f"CONTENTFORGE_{name.upper()}",
            allow_private=ALLOW_ALL in allowed or name in allowed,
            opt_in=f"{OPT_IN_VARIABLE}={name}",
        )

    def _refuse(self, url: object, reason: str) -> OutboundRefused:
        return OutboundRefused(f"{self.setting}: {reason}", url=str(url), setting=self.setting)

    def parse(self, url: str | httpx.URL) -> httpx.URL:
        """The URL as httpx will send it; scheme, host and credentials checked (no DNS)."""
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise self._refuse(url, f"not a valid URL ({exc})") from None
        if parsed.scheme not in ("http", "https"):
            raise self._refuse(parsed, f"only http and https URLs are used, not {parsed.scheme or 'none'!r}")
        if not parsed.host:
            raise self._refuse(parsed, "the URL has no host")
        if parsed.userinfo:
            raise self._refuse(parsed, "URLs with credentials (user@host) are refused; drop the user part")
        return parsed

    def check_static(self, url: str | httpx.URL) -> httpx.URL:
        """Refuse what needs no DNS lookup: scheme, credentials, a literal non-public IP, ``localhost``.

        For constructors, so that a misconfiguration fails at start-up with one line; every request is
        still resolved and checked again by ``addresses`` (which catches names resolving privately).
        """
        parsed = self.parse(url)
        if self.allow_private:
            return parsed
        host = parsed.host
        literal = _literal_address(host)
        if host == "localhost" or host.endswith(".localhost"):
            literal = "127.0.0.1"
        if literal is not None and not is_public_address(literal):
            raise self._refuse(parsed, self._private_reason(host, [literal]))
        return parsed

    def addresses(self, url: str | httpx.URL) -> list[str]:
        """Resolve the URL's host once and check every address; the ones a connection may use.

        Raises ``OutboundRefused`` (a refused address) or ``Unresolvable`` (no address at all).

        ``allow_private`` skips the address check, not the resolution: connections are pinned either way.
        """
        parsed = self.parse(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        resolver = self.resolver or resolve_host
        try:
            found = resolver(parsed.host, port)
        except (OSError, UnicodeError) as exc:
            raise Unresolvable(f"cannot resolve {parsed.host}: {exc}") from None
        if not found:
            raise Unresolvable(f"{parsed.host} resolves to no address")
        if self.allow_private:
            return found
        refused = [ip for ip in found if not is_public_address(ip)]
        if refused:
            raise self._refuse(parsed, self._private_reason(parsed.host, refused))
        return found

    def _private_reason(self, host: str, refused: Iterable[str]) -> str:
        opt_in = self.opt_in or f"{OPT_IN_VARIABLE}=*"
        return (
            f"{host} is or resolves to non-public address(es) {', '.join(refused)}; requests go to public "
            f"addresses only unless {opt_in} allows it"
        )

    def transport(self, http: ModuleType = httpx, **transport_options: Any) -> Any:
        """A transport that checks and pins every request (redirect hops included).

        ``http`` is the httpx package the client is built from: ``httpx``, or ``httpx2`` for the SDKs
        that moved to that fork (anthropic); ``transport_options`` go to its ``HTTPTransport``. Typed
        ``Any``: the result serves as ``http.BaseTransport``, and the two packages' classes differ.
        """
        return PinnedTransport(self, http, **transport_options)

    def client(self, **client_options: Any) -> httpx.Client:
        """An ``httpx.Client`` on ``transport()`` (environment proxies do not apply: nothing re-resolves)."""
        return httpx.Client(transport=self.transport(), trust_env=False, **client_options)


def _literal_address(host: str) -> str | None:
    """The IP a host names without DNS (``127.0.0.1``, ``2130706433``, ``::1``), else ``None``."""
    try:
        infos = socket.getaddrinfo(host, 0, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return None
    return str(infos[0][4][0]) if infos else None


def pinned(request_url: httpx.URL, ip: str) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The URL naming ``ip``, the ``Host`` header and the ``sni_hostname`` extension keeping the name."""
    return (
        request_url.copy_with(host=ip),
        {"host": request_url.netloc.decode("ascii")},
        {"sni_hostname": request_url.raw_host.decode("ascii")},
    )


def send_pinned(client: httpx.Client, method: str, url: str, addresses: list[str]) -> httpx.Response:
    """``method url`` over a connection to one of ``addresses`` (tried in order), streaming the body.

    Only a refused connection moves on to the next address; every one of them passed the check.
    """
    target = httpx.URL(url)
    failure = httpx.ConnectError(f"no address to connect to for {target.host}")
    for ip in addresses:
        pinned_url, host, sni = pinned(target, ip)
        request = client.build_request(method, pinned_url, headers=host, extensions=sni)
        try:
            return client.send(request, stream=True)
        except httpx.ConnectError as exc:
            failure = exc
    raise failure


class PinnedTransport:
    """Checks every request with ``policy`` and sends it to a checked address of its host.

    An httpx transport (``handle_request``) for the package ``http`` (``httpx`` or its fork
    ``httpx2``), so one implementation serves every client. Connections are pooled per host name (one
    inner ``HTTPTransport`` per name), so a connection whose TLS was verified for one name never
    carries a request for another name served from the same IP.
    """

    def __init__(self, policy: OutboundPolicy, http: ModuleType = httpx, **options: Any) -> None:
        self.policy = policy
        self._http = http
        self._options = options
        self._inner: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _transport_for(self, host: str) -> Any:
        with self._lock:
            inner = self._inner.get(host)
            if inner is None:
                inner = self._inner[host] = self._http.HTTPTransport(**self._options)
            return inner

    def handle_request(self, request: Any) -> Any:
        http = self._http
        try:
            addresses = self.policy.addresses(str(request.url))
        except Unresolvable as exc:
            raise http.ConnectError(str(exc), request=request) from None
        inner = self._transport_for(request.url.host)
        failure = http.ConnectError(f"no address to connect to for {request.url.host}", request=request)
        for ip in addresses:
            headers = http.Headers(request.headers)
            headers["host"] = request.url.netloc.decode("ascii")
            attempt = http.Request(
                request.method,
                request.url.copy_with(host=ip),
                headers=headers,
                stream=request.stream,
                extensions={**request.extensions, "sni_hostname": request.url.raw_host.decode("ascii")},
            )
            try:
                return inner.handle_request(attempt)
            except http.ConnectError as exc:
                failure = exc
        raise failure

    def close(self) -> None:
        with self._lock:
            inner, self._inner = list(self._inner.values()), {}
        for transport in inner:
            transport.close()

    def __enter__(self) -> PinnedTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()


def http_package_of(client_class: type) -> ModuleType:
    """The httpx package (``httpx`` or its fork ``httpx2``) an SDK's ``DefaultHttpxClient`` is built on."""
    for cls in client_class.__mro__:
        package = sys.modules.get(cls.__module__.partition(".")[0])
        if package is not None and package.__name__ in ("httpx", "httpx2") and cls.__name__ == "Client":
            return package
    raise TypeError(f"{client_class.__qualname__} is not an httpx client class")


def refusal_in(exc: BaseException) -> OutboundRefused | None:
    """The ``OutboundRefused`` behind ``exc`` (an SDK wraps it in its own connection error), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OutboundRefused):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
