"""The outbound URL policy: webhooks, the notify URL, publisher/LLM/Replicate base URLs reach public
addresses only (resolved once, every address checked, the connection pinned), unless opted in."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from support.llm_fakes import FakeOpenAI
from support.publishing import FakeApi, Request, Response, serve

from contentforge import outbound
from contentforge.config import Settings, get_settings
from contentforge.moderation.factory import build_backends
from contentforge.outbound import OutboundPolicy, OutboundRefused
from contentforge.publishing.factory import build_notifier, build_publisher
from contentforge.publishing.protocol import PermanentFailure, TransientError
from contentforge.publishing.webhook import WebhookNotifier, WebhookPublisher
from contentforge.text.providers import build_text_provider
from contentforge.text.providers.errors import ProviderUnavailable
from contentforge.text.providers.openai_provider import OpenAIProvider

SECRET = SecretStr("whsec-test-5f3a")
INTERNAL_URLS = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://[::1]:8080/hook",
    "http://0.0.0.0:8080/hook",
    "http://2130706433/hook",  # 127.0.0.1 in decimal
    "http://0x7f.1/hook",  # 127.0.0.1 in hex, short form
    "http://127.1/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/hook",  # 169.254.169.254, mapped
    "http://[2002:a9fe:a9fe::1]/hook",  # 6to4 of 169.254.169.254
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
    "http://[fe80::1]/hook",
    "http://10.0.0.5/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",  # shared address space (carrier NAT)
    "http://localhost:8080/hook",
    "http://public.example@127.0.0.1/hook",  # userinfo trick: the host is 127.0.0.1
    "http://0177.0.0.1/hook",  # octal: not a URL httpx sends
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
]


@pytest.fixture
def strict(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings without the test suite's loopback opt-in (conftest sets it for the API fakes)."""
    monkeypatch.delenv("CONTENTFORGE_ALLOW_PRIVATE_URLS", raising=False)
    get_settings.cache_clear()
    yield Settings(_env_file=None)
    get_settings.cache_clear()


class Receiver(FakeApi):
    def handle(self, request: Request) -> Response:
        return 200, {}, {"id": "hook-1"}


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_internal_urls_are_refused_without_a_request(url: str, strict: Settings) -> None:
    policy = OutboundPolicy.for_setting("webhook_url", strict)
    with pytest.raises(OutboundRefused, match="CONTENTFORGE_WEBHOOK_URL"):
        policy.check_static(url)  # no DNS needed for any of these
    with pytest.raises(OutboundRefused, match="CONTENTFORGE_WEBHOOK_URL"):
        policy.addresses(url)
    with pytest.raises(OutboundRefused, match="CONTENTFORGE_WEBHOOK_URL"):
        WebhookPublisher(url, SECRET)  # the process settings: no opt-in
    with pytest.raises(OutboundRefused, match="CONTENTFORGE_WEBHOOK_NOTIFY_URL"):
        WebhookNotifier(url, SECRET)


def test_refusal_is_one_line_naming_the_setting_and_the_opt_in(strict: Settings) -> None:
    settings = strict.model_copy(
        update={"webhook_notify_url": "http://169.254.169.254/latest/meta-data/", "webhook_secret": SECRET}
    )
    with pytest.raises(OutboundRefused) as refused:
        build_notifier(settings)
    message = str(refused.value)
    assert "\n" not in message and "169.254.169.254" in message
    assert message.startswith("CONTENTFORGE_WEBHOOK_NOTIFY_URL:")
    assert "CONTENTFORGE_ALLOW_PRIVATE_URLS=webhook_notify_url" in message
    opted_in = settings.model_copy(update={"allow_private_urls": "webhook_notify_url"})
    assert build_notifier(opted_in) is not None
    hook = settings.model_copy(update={"publisher_other": "webhook", "webhook_url": "http://[::1]/h"})
    with pytest.raises(OutboundRefused, match="CONTENTFORGE_WEBHOOK_URL"):
        build_publisher(hook, "threads")
    api = settings.model_copy(update={"publisher_x": "api", "x_access_token": SecretStr("t" * 20),
                                      "x_api_url": "http://2130706433"})  # fmt: skip
    with pytest.raises(OutboundRefused, match="CONTENTFORGE_X_API_URL"):
        build_publisher(api, "x")


def test_a_name_resolving_to_any_private_address_is_refused(strict: Settings) -> None:
    policy = OutboundPolicy(
        "CONTENTFORGE_WEBHOOK_URL", resolver=lambda host, port: ["93.184.216.34", "10.0.0.7"]
    )
    policy.check_static("https://hooks.example/h")  # a name: only a lookup can tell
    with pytest.raises(OutboundRefused, match=r"10\.0\.0\.7"):
        policy.addresses("https://hooks.example/h")
    public = OutboundPolicy("CONTENTFORGE_WEBHOOK_URL", resolver=lambda host, port: ["93.184.216.34"])
    assert public.addresses("https://hooks.example/h") == ["93.184.216.34"]


def test_a_webhook_name_resolving_to_loopback_never_reaches_it(
    strict: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_getaddrinfo = socket.getaddrinfo

    def dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        return real_getaddrinfo("127.0.0.1" if name == "hooks.example" else host, port, *args, **kwargs)

    with serve(Receiver()) as api:
        port = api.url.rsplit(":", 1)[1]
        publisher = WebhookPublisher(f"http://hooks.example:{port}/hook", SECRET)  # a name: passes
        monkeypatch.setattr(socket, "getaddrinfo", dns)
        with pytest.raises(PermanentFailure, match=r"CONTENTFORGE_WEBHOOK_URL: hooks.example .*127\.0\.0\.1"):
            publisher._poster.post({"event": "publication.publish"}, "key-1", "publish webhook")
    assert api.requests == [], "refused before any request"


def test_webhook_dns_rebinding_connects_only_to_the_checked_address(
    strict: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolver answers a public IP for the check and loopback afterwards: nothing reaches loopback."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection
    public = "93.184.216.34"
    lookups: list[str] = []
    connected: list[str] = []

    def rebinding_dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name != "rebind.example":
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(name)
        return real_getaddrinfo(public if len(lookups) == 1 else "127.0.0.1", port, *args, **kwargs)

    def network(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        connected.append(address[0])
        if address[0] == public:  # no route out of the test machine
            raise ConnectionRefusedError(111, "Connection refused")
        return real_connect(address, *args, **kwargs)

    with serve(Receiver()) as api:
        port = api.url.rsplit(":", 1)[1]
        notifier = WebhookNotifier(f"http://rebind.example:{port}/events", SECRET)
        monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
        monkeypatch.setattr(socket, "create_connection", network)
        with pytest.raises(TransientError, match="ConnectError"):
            notifier._poster.post({"event": "publication.failed"}, "key-1", "failed notification")
    assert lookups == ["rebind.example"], "resolved once"
    assert connected == [public], "connected to the checked address only"
    assert api.requests == []


def test_pinned_requests_keep_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(Receiver()) as api:
        port = api.url.rsplit(":", 1)[1]
        policy = OutboundPolicy(
            "CONTENTFORGE_WEBHOOK_URL", allow_private=True, resolver=lambda host, port: ["127.0.0.1"]
        )
        publisher = WebhookPublisher(f"http://hooks.example:{port}/hook", SECRET, policy=policy)
        assert publisher._poster.post({"event": "x"}, "key-1", "publish webhook") == {"id": "hook-1"}
    assert api.requests[0].headers["host"] == f"hooks.example:{port}"


def test_a_redirect_to_the_metadata_address_is_refused(
    strict: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OpenAI SDK follows redirects; each hop goes through the policy."""
    monkeypatch.setattr(outbound, "is_public_address", lambda ip: ip == "127.0.0.1")  # the fake is "public"

    class Redirecting(FakeApi):
        def handle(self, request: Request) -> Response:
            return 307, {"Location": "http://169.254.169.254/v1/chat/completions"}, None

    with serve(Redirecting()) as api:
        provider = OpenAIProvider(
            api_key=SecretStr("sk-test-0123456789abcdef"), model="gpt-test", base_url=f"{api.url}/v1",
            max_attempts=1, retry_base_s=0.0,
        )  # fmt: skip
        with pytest.raises(ProviderUnavailable, match=r"CONTENTFORGE_OPENAI_BASE_URL: 169\.254\.169\.254"):
            provider.generate("hello")
    assert len(api.requests) == 1


def test_a_local_llm_server_needs_the_documented_opt_in(strict: Settings) -> None:
    with FakeOpenAI(api_key=None) as server:
        server.text("from the local model")
        local = strict.model_copy(update={"text_providers": "local", "local_llm_base_url": server.url,
                                          "local_llm_model": "qwen2.5:0.5b"})  # fmt: skip
        with pytest.raises(OutboundRefused) as refused:
            build_text_provider(local)
        assert str(refused.value).startswith("CONTENTFORGE_LOCAL_LLM_BASE_URL: 127.0.0.1 ")
        assert "CONTENTFORGE_ALLOW_PRIVATE_URLS=local_llm_base_url" in str(refused.value)
        allowed = local.model_copy(update={"allow_private_urls": "local_llm_base_url"})
        assert build_text_provider(allowed).generate("hi").text == "from the local model"
        # The opt-in is per setting: it does not open the hosted OpenAI URL to loopback.
        hosted = allowed.model_copy(update={"text_providers": "openai", "openai_base_url": server.url,
                                            "openai_api_key": SecretStr("sk-" + "x" * 20)})  # fmt: skip
        with pytest.raises(OutboundRefused, match="CONTENTFORGE_OPENAI_BASE_URL"):
            build_text_provider(hosted)


def test_moderation_and_replicate_base_urls_are_checked(strict: Settings) -> None:
    moderation = strict.model_copy(update={"moderation_backends": "openai",
                                           "openai_api_key": SecretStr("sk-" + "x" * 20),
                                           "openai_moderation_base_url": "http://[::1]:9/v1"})  # fmt: skip
    with pytest.raises(OutboundRefused, match="CONTENTFORGE_OPENAI_MODERATION_BASE_URL"):
        build_backends(moderation)
    shared = moderation.model_copy(update={"openai_moderation_base_url": None,
                                           "openai_base_url": "http://169.254.169.254/v1"})  # fmt: skip
    with pytest.raises(OutboundRefused, match="CONTENTFORGE_OPENAI_BASE_URL"):
        build_backends(shared)
    from contentforge.images.replicate_backend import ReplicateBackend

    replicate = strict.model_copy(update={"replicate_api_token": SecretStr("r8_" + "x" * 30),
                                          "replicate_base_url": "http://169.254.169.254"})  # fmt: skip
    with pytest.raises(OutboundRefused, match="CONTENTFORGE_REPLICATE_BASE_URL"):
        ReplicateBackend.from_settings(replicate)


def test_the_opt_in_setting_names_known_url_settings() -> None:
    assert Settings(_env_file=None, allow_private_urls="CONTENTFORGE_LOCAL_LLM_BASE_URL, webhook_url")
    with pytest.raises(ValidationError, match="unknown URL settings"):
        Settings(_env_file=None, allow_private_urls="database_url")
