"""``ApiClient`` built without an httpx client still follows the outbound policy (public addresses only).

Collectors and publishers all pass a pinned policy client today; the default must not be the one path
by which a bearer token reaches a private address.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from support.insights import X_TOKEN, FakeXMetrics
from support.publishing import serve

from contentforge.config import get_settings
from contentforge.publishing.http import ApiClient
from contentforge.publishing.protocol import PermanentFailure


@pytest.fixture
def private_opt_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_default_client_refuses_a_private_address_before_any_request(
    private_opt_in: pytest.MonkeyPatch,
) -> None:
    private_opt_in.delenv("CONTENTFORGE_ALLOW_PRIVATE_URLS", raising=False)
    get_settings.cache_clear()
    with serve(FakeXMetrics({})) as api:
        client = ApiClient(api.url, SecretStr(X_TOKEN), service="x")
        with pytest.raises(PermanentFailure, match="non-public address") as refused:
            client.request("GET", "/2/users/me")
        client.close()
    assert "CONTENTFORGE_ALLOW_PRIVATE_URLS=*" in str(refused.value)
    assert X_TOKEN not in str(refused.value)
    assert not api.requests  # nothing reached the loopback server


def test_default_client_uses_the_named_settings_opt_in(private_opt_in: pytest.MonkeyPatch) -> None:
    private_opt_in.setenv("CONTENTFORGE_ALLOW_PRIVATE_URLS", "x_api_url")
    get_settings.cache_clear()
    with serve(FakeXMetrics({})) as api:
        named = ApiClient(api.url, SecretStr(X_TOKEN), service="x", setting="x_api_url")
        assert named.request("GET", "/2/users/me").status_code == 200
        named.close()
        unnamed = ApiClient(api.url, SecretStr(X_TOKEN), service="x")  # only '*' opts an unnamed one in
        with pytest.raises(PermanentFailure, match="CONTENTFORGE_ALLOW_PRIVATE_URLS=\\*"):
            unnamed.request("GET", "/2/users/me")
        unnamed.close()
    assert len(api.requests) == 1
