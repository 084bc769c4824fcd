"""The OpenAPI document against the app: schemathesis generates requests from the published schema,
sends them to the ASGI app in-process (no network) and checks every answer.

What it finds, per route of the final app (every router, whoever wrote it):

* a status code the document does not list for that route (``status_code_conformance``);
* any 5xx (``not_a_server_error``), and a body that does not match its documented schema
  (``response_schema_conformance``, which holds the error shape too);
* a schema-valid request refused by the API's own schema validation: a 422 ``validation_error`` for a
  request the document says is valid means the document is missing a constraint
  (``schema_valid_requests_pass_validation`` below, which replaces schemathesis' coarser
  ``positive_data_acceptance``). A 422 with another code (``unknown_persona``, ``invalid_input``) is
  a check the schema cannot express (does this persona exist?) and is allowed;
* an invalid request accepted (``negative_data_rejection``).

The bearer token is the test's, not a generated parameter (``with_security_parameters=False``):
otherwise a negative case whose only invalid part is a dropped or garbled ``Authorization`` header
would be sent with the test's token put back, i.e. as a valid request, and be reported as "invalid
data accepted" (what made ``GET /jobs/stats`` look broken). Missing and unknown tokens are tested in
``tests/test_api.py``.

Routes that start Prefect runs get ``RecordingLauncher`` (a test double in ``tests/support``), so
generated requests are recorded, not turned into flow runs; routes that read jobs read the test
session's real Prefect server; model searches go to loopback fakes of CivitAI and the Hugging Face
Hub (``tests/support/model_hubs.py``), so they answer for real. No request leaves the machine: host
names do not resolve here (an ``image_url`` to a generated host is refused or unreachable, as
documented). Examples are bounded (``MAX_EXAMPLES`` per route and mode) so the whole module stays
well under a minute.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from support.api import build_world
from support.model_hubs import FakeHubs, HubWorld
from support.recording_launcher import RecordingLauncher

from contentforge.config import Settings
from contentforge_api import create_app

FULL = "fuzz-full-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {FULL}"}
MAX_EXAMPLES = 8


def _loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    if str(host) in {"127.0.0.1", "localhost", "::1"}:
        return _real_getaddrinfo(host, *args, **kwargs)
    raise socket.gaierror(socket.EAI_NONAME, "no name resolution in the fuzz test")


_real_getaddrinfo = socket.getaddrinfo


@pytest.fixture(scope="module")
def fake_hubs() -> Iterator[FakeHubs]:
    """One model on each hub, so ``/models/search`` finds something for some generated queries."""
    world = HubWorld()
    world.add_civitai(
        101,
        "Film Grain",
        type_="LORA",
        version_id=1001,
        base_model="SDXL 1.0",
        file_name="film_grain.safetensors",
        data=b"not downloaded by a search",
        tags=["film"],
    )
    world.add_hf_repo("tiny-org/film-lora", {"README.md": b"# film"}, tags=["lora", "film"])
    with FakeHubs(world) as server:
        yield server


@pytest.fixture(scope="module")
def fuzz_app(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: str, fake_hubs: FakeHubs
) -> Iterator[Any]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz-data")
    app_settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        api_token=FULL,
        api_read_token="fuzz-read-token-0123456789abcdef",
        image_profile="fixed-latency",  # validation builds the backend object; no torch import needed
        fixed_latency_s=0.0,
        # The DM webhooks check signatures with these; without them they answer 503 by design.
        instagram_app_secret="fuzz-instagram-app-secret",
        x_consumer_secret="fuzz-x-consumer-secret",
        civitai_base_url=fake_hubs.url,
        hf_endpoint=fake_hubs.url,
    )
    build_world(app_settings)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", _loopback_only)
        yield create_app(app_settings, launcher=RecordingLauncher())


@pytest.fixture(scope="module")
def api_schema(fuzz_app: Any) -> Any:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_app)
    schema.config.generation.update(with_security_parameters=False)
    return schema


def schema_valid_requests_pass_validation(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request generated as schema-valid must never fail the API's own schema validation."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    if code == "validation_error":
        raise AssertionError(
            f"{case.operation.label}: a request valid by the OpenAPI document was refused by the API's "
            f"validation (the document lacks a constraint): {response.text[:500]}"
        )
    return None


def _failures_of(operation: Any, mode: GenerationMode) -> list[str]:
    """Run ``MAX_EXAMPLES`` generated requests of one mode against one operation; the failures found."""
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is reported as is
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            headers=AUTH,
            additional_checks=[schema_valid_requests_pass_validation],
            excluded_checks=[positive_data_acceptance],
        )

    try:
        run()
    except Unsatisfiable:  # e.g. no request can break a schema that accepts anything: nothing to send
        pass
    except (Exception, BaseExceptionGroup) as exc:  # a group of check failures: keep its text
        failures.append(f"{operation.label} [{mode.value}]: {exc}"[:3000])
    return failures


def test_the_api_keeps_its_openapi_contract(api_schema: Any) -> None:
    failures: dict[str, list[str]] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if found := _failures_of(operation, mode):
                failures.setdefault(operation.label, []).extend(found)
    assert not failures, "\n\n".join(text for found in failures.values() for text in found)


def test_model_search_reaches_the_loopback_hubs(fuzz_app: Any) -> None:
    """The fuzz test's model searches are answered by the fakes, not refused as an unreachable hub."""
    with TestClient(fuzz_app) as client:
        civitai = client.get("/api/v1/models/search", params={"query": "film"}, headers=AUTH)
        hf = client.get("/api/v1/models/search", params={"query": "film", "hub": "huggingface"}, headers=AUTH)
    assert civitai.status_code == 200, civitai.text
    assert [m["name"] for m in civitai.json()] == ["Film Grain v1.0"]
    assert hf.status_code == 200, hf.text
    assert [m["ref"] for m in hf.json()] == ["tiny-org/film-lora"]
    # A hub that cannot be reached is a 502, which the document lists for the route.
    documented = fuzz_app.openapi()["paths"]["/api/v1/models/search"]["get"]["responses"]
    assert "502" in documented
