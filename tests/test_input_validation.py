"""Bad input is refused before any work (issue 12, item 8): one line, from the CLI and the API alike.

Every CLI test here replaces ``contentforge_cli.runtime.connect`` (what starts or reaches the Prefect
server) with a function that fails the test, so a refusal that happens too late is caught.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from contentforge.batch import piece_id_for, plan_pieces, validate_batch_request
from contentforge.catalog import load_templates
from contentforge.config import Settings, get_settings
from contentforge.db import PlannedPiece, Repository, make_engine, migrate
from contentforge.domain.models import ID_PATTERN, Persona, Platform
from contentforge.errors import InvalidInput
from contentforge.personas import load_persona_file, sample_persona
from contentforge.text.hooks import OfflineHookWriter
from contentforge.text.platform_rules import PlatformRules
from contentforge.validation import (
    BATCH_ID_MAX,
    InvalidSettings,
    check_batch_id,
    load_settings,
    read_text_file,
)

TOKEN = "full-token-0123456789abcdef"


@pytest.fixture
def repo(settings_env: Path, monkeypatch: pytest.MonkeyPatch) -> Repository:
    monkeypatch.setenv("CONTENTFORGE_IMAGE_PROFILE", "fixed-latency")  # no torch import in validation
    get_settings.cache_clear()
    url = get_settings().resolved_database_url
    migrate(url)
    repository = Repository(make_engine(url))
    repository.upsert_persona(sample_persona())
    return repository


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the CLI tries to start or reach a Prefect server."""

    def connect(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the Prefect server was contacted before the input was refused")

    monkeypatch.setattr("contentforge_cli.runtime.connect", connect)


def _cli(args: list[str]) -> Any:
    from contentforge_cli.main import app

    return CliRunner().invoke(app, args)


def _refused(result: Any, *words: str) -> str:
    """Exit code 2, exactly one line of output, no traceback; returns the line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _leo(repo: Repository) -> None:
    repo.upsert_persona(
        sample_persona().model_copy(update={"id": "leo-park", "name": "Leo Park", "platforms": [Platform.x]})
    )


# --- batch ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch_id",
    ["../../../../tmp/x", "with_underscore", "UPPER", "-dash-first", "a" * (BATCH_ID_MAX + 1), "", "ünï"],
)
def test_cli_refuses_a_bad_batch_id_before_the_server(
    repo: Repository, no_server: None, batch_id: str
) -> None:
    line = _refused(_cli(["produce", "mia-fit", "-n", "2", "--batch-id", batch_id]), "batch id")
    assert "lowercase letters, digits and dashes" in line
    assert repo.latest_batches() == [] and repo.pieces() == []


def test_cli_refuses_another_personas_batch_before_the_server(repo: Repository, no_server: None) -> None:
    _leo(repo)
    repo.create_batch(
        batch_id="leos-batch", persona_id="leo-park", platform="x", num_pieces=2,
        tier_mix={"safe": 1.0, "suggestive": 0.0}, seed=0, params={}, flow_run_id=None,
    )  # fmt: skip
    _refused(_cli(["produce", "mia-fit", "--batch-id", "leos-batch"]), "belongs to persona 'leo-park'")
    assert [b.status for b in repo.latest_batches()] == ["running"]  # untouched, and nothing added


def test_cli_refuses_a_batch_another_run_holds_before_the_server(repo: Repository, no_server: None) -> None:
    repo.create_batch(
        batch_id="held-batch", persona_id="mia-fit", platform="instagram", num_pieces=2,
        tier_mix={"safe": 1.0, "suggestive": 0.0}, seed=0, params={}, flow_run_id="r1",
    )  # fmt: skip
    repo.acquire_batch_lease("held-batch", "gpu-box:pid 7:flow run r1", ttl_s=60)
    line = _refused(_cli(["produce", "mia-fit", "-n", "2", "--batch-id", "held-batch"]), "already being run")
    assert "gpu-box:pid 7:flow run r1" in line and "--wait" in line
    assert repo.batch_lease("held-batch") is not None and repo.pieces() == [], "the holder is left alone"


def test_a_batch_is_resumed_only_on_the_platform_it_was_produced_for(repo: Repository) -> None:
    repo.create_batch(
        batch_id="insta-batch", persona_id="mia-fit", platform="instagram", num_pieces=2,
        tier_mix={"safe": 1.0, "suggestive": 0.0}, seed=0, params={}, flow_run_id=None,
    )  # fmt: skip
    persona = repo.get_persona("mia-fit")
    assert persona is not None
    other = next(p for p in persona.platforms if p.value != "instagram")
    with pytest.raises(InvalidInput, match="was produced for instagram"):
        validate_batch_request(
            repo, get_settings(), persona="mia-fit", num_pieces=2, platform=other.value, tier_mix=None,
            seed=0, batch_id="insta-batch",
        )  # fmt: skip


def test_batch_ids_sharing_their_first_16_characters_plan_distinct_pieces(repo: Repository) -> None:
    request = validate_batch_request(
        repo, get_settings(), persona="mia-fit", num_pieces=3, platform="instagram", tier_mix=None, seed=0
    )
    for batch_id in ("same-first-16-ch-one", "same-first-16-ch-two"):
        repo.create_batch(
            batch_id=batch_id, persona_id="mia-fit", platform="instagram", num_pieces=3,
            tier_mix=request.tier_mix.model_dump(), seed=0, params={}, flow_run_id=None,
        )  # fmt: skip
        repo.add_planned_pieces(batch_id, plan_pieces(request, batch_id))  # the second one used to clash
    assert len(repo.pieces()) == 6
    longest = piece_id_for("a" * BATCH_ID_MAX, 499)
    assert len(longest) <= 64 and re.fullmatch(ID_PATTERN, longest)  # pieces.id is String(64)


def test_a_batch_planned_with_old_piece_ids_resumes_with_them(repo: Repository) -> None:
    from contentforge.batch import stored_piece_ids

    batch_id = "0123456789abcdef0123456789abcdef"  # a uuid hex: old piece ids used its first 16 characters
    request = validate_batch_request(
        repo, get_settings(), persona="mia-fit", num_pieces=3, platform="instagram", tier_mix=None, seed=0
    )
    repo.create_batch(
        batch_id=batch_id, persona_id="mia-fit", platform="instagram", num_pieces=3,
        tier_mix=request.tier_mix.model_dump(), seed=0, params={}, flow_run_id=None,
    )  # fmt: skip
    old = [
        PlannedPiece(f"{batch_id[:16]}-{p.index:03d}", p.index, p.template_id, p.template_tier, p.prompt,
                     p.negative_prompt, p.seed)
        for p in plan_pieces(request, batch_id)
    ]  # fmt: skip
    repo.add_planned_pieces(batch_id, old)
    replanned = plan_pieces(request, batch_id)
    repo.add_planned_pieces(batch_id, replanned)  # the planner's idempotent second call on resume
    assert stored_piece_ids(repo, batch_id, replanned) == [p.piece_id for p in old]
    assert len(repo.pieces(batch_id=batch_id)) == 3
    # A new batch whose ids would be that old batch's piece ids is refused before anything starts.
    with pytest.raises(InvalidInput, match="would reuse piece ids of batch"):
        validate_batch_request(
            repo, get_settings(), persona="mia-fit", num_pieces=3, platform="instagram", tier_mix=None,
            seed=0, batch_id=batch_id[:16],
        )  # fmt: skip


# --- settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "variable", "words"),
    [
        ({"CONTENTFORGE_IMAGE_STEPS": "0"}, "CONTENTFORGE_IMAGE_STEPS", "greater than or equal to 1"),
        ({"CONTENTFORGE_IMAGE_WIDTH": "13"}, "CONTENTFORGE_IMAGE_WIDTH", "greater than or equal to 64"),
        ({"CONTENTFORGE_IMAGE_WIDTH": "130"}, "CONTENTFORGE_IMAGE_WIDTH", "multiple of 8"),
        ({"CONTENTFORGE_IMAGE_HEIGHT": "99999999999999999999"}, "CONTENTFORGE_IMAGE_HEIGHT", "less than"),
        ({"CONTENTFORGE_IMAGE_DEVICE": "banana"}, "CONTENTFORGE_IMAGE_DEVICE", "cuda:N"),
        (
            {"CONTENTFORGE_IMAGE_FAMILY": "flux", "CONTENTFORGE_IMAGE_WIDTH": "136"},
            "CONTENTFORGE_IMAGE_WIDTH",
            "multiple of 16",
        ),
    ],
)
@pytest.mark.parametrize("command", [["produce", "mia-fit"], ["api", "serve", "--insecure-local"]])
def test_bad_image_settings_are_one_line_naming_the_variable(
    settings_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_server: None,
    env: dict[str, str],
    variable: str,
    words: str,
    command: list[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    _refused(_cli(command), variable, words)
    with pytest.raises(InvalidSettings, match=variable):
        load_settings()


def test_good_image_settings_still_load(settings_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"IMAGE_WIDTH": "1024", "IMAGE_HEIGHT": "768", "IMAGE_DEVICE": "CUDA:1"}.items():
        monkeypatch.setenv(f"CONTENTFORGE_{name}", value)
    get_settings.cache_clear()
    settings = load_settings()
    assert (settings.image_width, settings.image_height, settings.image_device) == (1024, 768, "cuda:1")


# --- personas: size limits, files ---------------------------------------------------------------------


def _persona_data(**overrides: object) -> dict[str, object]:
    return (
        sample_persona().model_dump(mode="json", exclude_none=True)
        | {"id": "big-one", "name": "Big"}
        | overrides
    )


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"interests": ["x" * 200_000]}, "interests.0"),
        ({"personality_traits": ["kind"] * 21}, "personality_traits"),
        ({"interests": [f"interest {i}" for i in range(31)]}, "interests"),
        ({"timezone": "Europe/" + "x" * 100}, "timezone"),
        ({"name": "   "}, "name"),
        ({"interests": ["running", " "]}, "interests"),
        ({"lora": {"source": "x" * 2000}}, "lora.source"),
    ],
)
def test_persona_fields_and_lists_are_bounded(
    overrides: dict[str, object], where: str, settings_env: Path
) -> None:
    with pytest.raises(ValidationError) as caught:
        Persona.model_validate(_persona_data(**overrides))
    assert ".".join(map(str, caught.value.errors()[0]["loc"])).startswith(where)


def test_a_rich_real_persona_fits_comfortably() -> None:
    Persona.model_validate(
        _persona_data(
            personality_traits=[f"trait number {i}, described in a few words" for i in range(12)],
            interests=[f"an interest described at some length, number {i}" for i in range(20)],
            appearance="a" * 590,
            tone="t" * 190,
            platforms=["instagram", "tiktok", "x", "threads", "linkedin"],
        )
    )


def test_cli_personas_add_refuses_oversized_input(repo: Repository, tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_text(yaml.safe_dump(_persona_data(interests=["word " * 2_000_000])), encoding="utf-8")
    _refused(_cli(["personas", "add", str(huge)]), "persona file", "at most 65536")
    long_item = tmp_path / "long-item.yaml"
    long_item.write_text(yaml.safe_dump(_persona_data(interests=["word " * 2_000])), encoding="utf-8")
    _refused(_cli(["personas", "add", str(long_item)]), "interests.0", "at most 100 characters")
    assert [p.id for p in repo.list_personas()] == ["mia-fit"]


def test_persona_files_are_checked_as_files(tmp_path: Path) -> None:
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: Zoë\n".encode("latin-1"))
    for path, words in [
        (tmp_path / "missing.yaml", "does not exist"),
        (folder, "not a regular file"),
        (latin1, "not UTF-8 text (byte 8, line 1)"),
    ]:
        with pytest.raises(InvalidInput, match=re.escape(words)):
            load_persona_file(path)
    latin1.write_bytes(b"x" * 11)
    with pytest.raises(InvalidInput, match="has 11 bytes; at most 10 are accepted"):
        read_text_file(latin1, what="file", max_bytes=10)


def _measured_chars(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the characters the writer measures (``trim_text`` measures every candidate it tries)."""
    measured: list[int] = []
    original = PlatformRules.measure

    def measure(self: PlatformRules, text: str) -> int:
        measured.append(len(text))
        return original(self, text)

    monkeypatch.setattr(PlatformRules, "measure", measure)
    return measured


def test_the_offline_hook_writer_is_linear_in_its_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """A persona stored before the limits (model_construct skips them) must not stall a batch."""
    template = next(t for t in load_templates() if "fitness" in t.niches)
    measured = _measured_chars(monkeypatch)
    work, seconds = {}, {}
    for words in (1_000, 4_000):
        big = " ".join(f"word{i}" for i in range(words))
        persona = Persona.model_construct(
            **(sample_persona().model_dump() | {"name": big, "interests": [big], "personality_traits": [big]})
        )
        measured.clear()
        started = time.perf_counter()
        hooks = OfflineHookWriter().write_hooks(persona, template, Platform.instagram, count=5, seed=1)
        seconds[words] = time.perf_counter() - started
        work[words] = sum(measured)
        assert all(len(hook.text) <= 150 for hook in hooks)
    assert work[4_000] <= 1.5 * work[1_000] + 10_000, work  # quadratic: 16x
    assert seconds[4_000] < 2.0, seconds


# --- one request, validated whole before anything is saved ----------------------------------------


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--platform", "myspace"], "unknown platform 'myspace'"),
        (["--platform", "linkedin"], "does not target linkedin"),
        (["-n", "0"], "between 1 and 500"),
        (["--seed", "-1"], "seed"),
        (["--tier-mix", "safe=" + "9" * 500], "tier mix is 505 characters long"),
        (["--batch-id", "Bad_Id"], "batch id 'Bad_Id'"),
    ],
)
def test_produce_from_a_file_saves_nothing_when_refused(
    repo: Repository, no_server: None, tmp_path: Path, extra: list[str], words: str
) -> None:
    path = tmp_path / "zoe.yaml"
    path.write_text(yaml.safe_dump(_persona_data(id="zoe-new", name="Zoe New")), encoding="utf-8")
    _refused(_cli(["produce", str(path), *extra]), words)
    assert repo.get_persona("zoe-new") is None
    assert repo.latest_batches() == []


# --- publishing inputs ------------------------------------------------------------------------------


def test_publish_plan_that_is_not_utf8_is_one_line(repo: Repository, tmp_path: Path) -> None:
    plan = tmp_path / "plan.csv"
    plan.write_bytes("piece_id,platform,when\nmia-000,x,2026-03-01T09:00 café\n".encode("latin-1"))
    _refused(_cli(["publish", "plan", str(plan)]), "posting plan", "not UTF-8 text", "line 2")
    _refused(_cli(["publish", "plan", str(tmp_path / "nope.csv")]), "does not exist")


def test_publish_schedule_refuses_an_unknown_platform(repo: Repository) -> None:
    line = _refused(_cli(["publish", "schedule", "some-batch", "-p", "x", "-p", "myspace"]))
    assert "unknown platform 'myspace'; use one of instagram, tiktok, x, threads, linkedin" in line


# --- user text is printed literally --------------------------------------------------------------------


@pytest.mark.parametrize("reference", ["[/bold]", "[red]x", "[bold]mia[/bold]", "[link=http://e.vil]y"])
def test_cli_prints_persona_references_literally(repo: Repository, no_server: None, reference: str) -> None:
    _refused(_cli(["produce", reference]), f"unknown persona {reference!r}")


def test_cli_prints_the_id_pattern_and_stored_names_literally(repo: Repository, tmp_path: Path) -> None:
    bad = tmp_path / "bad-id.yaml"
    bad.write_text(yaml.safe_dump(_persona_data(id="Not An Id")), encoding="utf-8")
    _refused(_cli(["personas", "add", str(bad)]), "^[a-z0-9][a-z0-9_-]{0,63}$")
    named = tmp_path / "named.json"
    named.write_text(
        json.dumps(_persona_data(id="brackets", name="[bold]Ann[/bold] [red]x")), encoding="utf-8"
    )
    added = _cli(["personas", "add", str(named)])
    assert added.exit_code == 0 and "[bold]Ann[/bold] [red]x" in added.output, added.output
    listed = _cli(["personas", "list"])
    assert listed.exit_code == 0 and "[bold]Ann[/bold]" in listed.output, listed.output


def test_long_messages_stay_on_one_line(repo: Repository, no_server: None) -> None:
    _refused(_cli(["produce", "x" * 300]), "unknown persona")


# --- the API refuses the same inputs with the same message ---------------------------------------------


@pytest.fixture
def client(repo: Repository, settings_env: Path) -> Iterator[TestClient]:
    from contentforge_api import create_app

    settings = Settings(_env_file=None, data_dir=settings_env, api_token=TOKEN, image_profile="fixed-latency")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _api_refusal(client: TestClient, path: str, body: dict[str, Any]) -> str:
    response = client.post(path, headers={"Authorization": f"Bearer {TOKEN}"}, json=body)
    assert response.status_code == 422, response.text
    return str(response.json()["error"]["message"])


@pytest.mark.parametrize("batch_id", ["with_underscore", "../x", "a" * (BATCH_ID_MAX + 1)])
def test_api_and_cli_refuse_a_batch_id_with_the_same_message(
    client: TestClient, no_server: None, batch_id: str
) -> None:
    api = _api_refusal(client, "/api/v1/content/batch", {"persona": "mia-fit", "batch_id": batch_id})
    cli = _refused(_cli(["produce", "mia-fit", "--batch-id", batch_id]))
    assert cli == f"error: {api}"
    with pytest.raises(InvalidInput) as caught:
        check_batch_id(batch_id)
    assert str(caught.value) == api


def test_api_bounds_personas_and_tier_mixes(client: TestClient) -> None:
    message = _api_refusal(client, "/api/v1/personas", _persona_data(interests=["x" * 200_000]))
    assert "interests.0" in message
    message = _api_refusal(client, "/api/v1/content/batch", {"persona": "mia-fit", "tier_mix": "s" * 201})
    assert "tier_mix" in message
    many = {f"tier{i}": 0.0 for i in range(1000)}
    assert "tier_mix" in _api_refusal(
        client, "/api/v1/content/batch", {"persona": "mia-fit", "tier_mix": many}
    )


# --- the real flow resumes a batch planned with the old piece ids ------------------------------------


@pytest.mark.slow
def test_the_batch_flow_resumes_a_batch_planned_with_old_piece_ids(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: str
) -> None:
    monkeypatch.setenv("CONTENTFORGE_IMAGE_PROFILE", "fixed-latency")
    monkeypatch.setenv("CONTENTFORGE_FIXED_LATENCY_S", "0")
    get_settings.cache_clear()
    from flows.produce_content_batch import produce_content_batch
    from tasks import resources
    from tasks.bootstrap import ensure_concurrency_limit

    settings = get_settings()
    ensure_concurrency_limit(settings.concurrency_limit_name, settings.generation_slots)
    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    batch_id = "0123456789abcdef0123456789abcdef"
    request = validate_batch_request(
        repo, settings, persona="mia-fit", num_pieces=3, platform="instagram", tier_mix=None, seed=0
    )
    repo.create_batch(
        batch_id=batch_id, persona_id="mia-fit", platform="instagram", num_pieces=3,
        tier_mix=request.tier_mix.model_dump(), seed=0, params={}, flow_run_id=None,
    )  # fmt: skip
    old_ids = [f"{batch_id[:16]}-{i:03d}" for i in range(3)]
    repo.add_planned_pieces(
        batch_id,
        [
            PlannedPiece(old_id, p.index, p.template_id, p.template_tier, p.prompt, p.negative_prompt, p.seed)
            for old_id, p in zip(old_ids, plan_pieces(request, batch_id), strict=True)
        ],
    )
    stats = produce_content_batch(
        persona="mia-fit", num_pieces=3, seed=0, batch_id=batch_id, safety_check=False
    )
    rows = repo.pieces(batch_id=batch_id)
    assert sorted(r.id for r in rows) == old_ids
    assert stats["by_status"].get("failed", 0) == 0
    assert all(r.storage_key and len(r.hooks) == 5 for r in rows)
