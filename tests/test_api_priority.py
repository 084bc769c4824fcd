"""``priority`` on the content routes that start work: who may ask for ``high``, and where it goes.

``/content/batch`` and ``/content/generate`` pass ``priority`` to the batch flow (its turn for the
``image-generation`` slots) and start a high run on the work queue ``work_queue_for()`` names
(``priority``); normal and low keep the deployment's own queue (``default`` in prefect.yaml).
``high`` needs ``CONTENTFORGE_API_HIGH_PRIORITY_ALLOWED``, checked by the same function as the
strategy chain's routes, before the request is even validated, so a refused request starts nothing.
The launcher is ``RecordingLauncher`` (a labelled test double): what a route hands it is exactly
what the real launcher passes to Prefect's ``run_deployment``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.api import build_world
from support.recording_launcher import RecordingLauncher

from contentforge.config import Settings
from contentforge_api import create_app

FULL = "priority-full-token-0123456789abcdef"
READ = "priority-read-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {FULL}"}
ROUTES = {
    "/api/v1/content/batch": {"persona": "ava", "num_pieces": 3},
    "/api/v1/content/generate": {"persona": "ava"},
}


def _client(tmp_path: Path, *, high_allowed: bool) -> tuple[TestClient, RecordingLauncher]:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        api_token=FULL,
        api_read_token=READ,
        image_profile="fixed-latency",
        fixed_latency_s=0.0,
        api_high_priority_allowed=high_allowed,
    )
    build_world(settings)
    launcher = RecordingLauncher()
    return TestClient(create_app(settings, launcher=launcher)), launcher


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_high_without_the_permission_is_refused_before_anything_starts(tmp_path: Path, route: str) -> None:
    client, launcher = _client(tmp_path, high_allowed=False)
    refused = client.post(route, headers=AUTH, json=ROUTES[route] | {"priority": "high"})
    assert refused.status_code == 403, refused.text
    assert "CONTENTFORGE_API_HIGH_PRIORITY_ALLOWED" in refused.json()["error"]["message"]
    # Checked before the request is validated: an unknown persona is not even looked up.
    unknown = client.post(route, headers=AUTH, json=ROUTES[route] | {"persona": "nobody", "priority": "high"})
    assert unknown.status_code == 403, unknown.text
    assert launcher.launches == []
    # Without the permission, normal work still starts (on the default queue).
    started = client.post(route, headers=AUTH, json=ROUTES[route] | {"priority": "normal"})
    assert started.status_code == 202, started.text
    assert [launch.options["work_queue_name"] for launch in launcher.launches] == [None]


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_priority_chooses_the_work_queue_and_reaches_the_flow(tmp_path: Path, route: str) -> None:
    client, launcher = _client(tmp_path, high_allowed=True)
    answers: dict[str, Any] = {}
    for priority in ("high", "normal", "low", None):
        body = ROUTES[route] | ({"priority": priority} if priority else {})
        response = client.post(route, headers=AUTH, json=body)
        assert response.status_code == 202, response.text
        answers[str(priority)] = response.json()
    queues = [launch.options["work_queue_name"] for launch in launcher.launches]
    priorities = [launch.parameters["priority"] for launch in launcher.launches]
    # high names the priority queue; the others keep the deployment's own (prefect.yaml: default).
    assert queues == ["priority", None, None, None]
    assert priorities == ["high", "normal", "low", "normal"]  # no priority asked: normal
    assert answers["high"]["work_queue"] == "priority"
    assert answers["low"]["work_queue"] == "default"
    assert answers["high"]["parameters"]["priority"] == "high"
    assert "priority:high" in launcher.launches[0].tags  # the jobs list and the Prefect UI show it
    # The read-only token is refused whatever the priority (it may start nothing).
    read_only = client.post(route, headers={"Authorization": f"Bearer {READ}"}, json=ROUTES[route])
    assert read_only.status_code == 403
    assert len(launcher.launches) == 4


def test_an_unknown_priority_is_a_validation_error(tmp_path: Path) -> None:
    client, launcher = _client(tmp_path, high_allowed=True)
    for route, body in ROUTES.items():
        response = client.post(route, headers=AUTH, json=body | {"priority": "urgent"})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_error"
        assert "priority" in response.json()["error"]["message"]
    assert launcher.launches == []


def test_the_batch_flow_takes_the_priority_parameter() -> None:
    """Prefect refuses a run whose parameters the flow does not declare: the name must match."""
    from flows.produce_content_batch import produce_content_batch

    assert "priority" in inspect.signature(produce_content_batch.fn).parameters
