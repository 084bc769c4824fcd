"""Bad input fails before any expensive work, with one line naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from contentforge.batch import validate_batch_request
from contentforge.config import get_settings
from contentforge.db import Repository, make_engine, migrate
from contentforge.errors import InvalidInput, InvalidLora, UnknownPersona
from contentforge.personas import sample_persona


@pytest.fixture
def repo(settings_env: Path) -> Repository:
    url = get_settings().resolved_database_url
    migrate(url)
    repository = Repository(make_engine(url))
    repository.upsert_persona(sample_persona())
    return repository


def _validate(repo: Repository, **overrides: object):  # type: ignore[no-untyped-def]
    request = dict(persona="mia-fit", num_pieces=50, platform="instagram", tier_mix=None, seed=0) | overrides
    return validate_batch_request(repo, get_settings(), **request)  # type: ignore[arg-type]


def test_valid_request(repo: Repository) -> None:
    request = _validate(repo, tier_mix="safe=0.8,suggestive=0.2")
    assert request.persona.id == "mia-fit"
    assert request.tier_mix.counts(50) == {"safe": 40, "suggestive": 10}


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"persona": "nobody"}, UnknownPersona, "unknown persona 'nobody'"),
        ({"tier_mix": {"safe": 0.5, "suggestive": 0.3}}, InvalidInput, "must sum to 1"),
        ({"tier_mix": "safe=0.9"}, InvalidInput, "must sum to 1"),
        ({"num_pieces": 0}, InvalidInput, "between 1 and 500"),
        ({"num_pieces": 501}, InvalidInput, "between 1 and 500"),
        ({"platform": "myspace"}, InvalidInput, "unknown platform 'myspace'"),
        ({"platform": "linkedin"}, InvalidInput, "does not target linkedin"),
        ({"seed": -1}, InvalidInput, "seed"),
    ],
)
def test_bad_input_is_named(repo: Repository, overrides: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        _validate(repo, **overrides)


def test_unreadable_lora_file_is_refused(repo: Repository, tmp_path: Path) -> None:
    persona = sample_persona().model_copy(
        update={
            "id": "with-lora",
            "name": "With Lora",
            "lora": {"source": str(tmp_path / "missing.safetensors")},
        }
    )
    persona = type(persona).model_validate(persona.model_dump())
    repo.upsert_persona(persona)
    with pytest.raises(InvalidLora, match=r"missing\.safetensors"):
        _validate(repo, persona="with-lora")


def test_missing_or_pickle_model_is_refused_before_planning(
    repo: Repository, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from contentforge.errors import UnsafeCheckpoint

    monkeypatch.setenv("CONTENTFORGE_IMAGE_PROFILE", "model")
    monkeypatch.setenv("CONTENTFORGE_IMAGE_MODEL", str(tmp_path / "nowhere"))
    get_settings.cache_clear()
    with pytest.raises(InvalidInput, match="no such file or folder"):
        _validate(repo)
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"not really a pickle")
    monkeypatch.setenv("CONTENTFORGE_IMAGE_MODEL", str(checkpoint))
    get_settings.cache_clear()
    with pytest.raises(UnsafeCheckpoint, match="CONTENTFORGE_ALLOW_PICKLE"):
        _validate(repo)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["produce", "nobody"], "unknown persona 'nobody'"),
        (["produce", "mia-fit", "--tier-mix", "safe=0.5,suggestive=0.4"], "must sum to 1"),
        (["produce", "mia-fit", "-n", "9999"], "between 1 and 500"),
        (["produce", "mia-fit", "--platform", "myspace"], "unknown platform"),
    ],
)
def test_cli_prints_one_line_and_exits_2(repo: Repository, args: list[str], message: str) -> None:
    from contentforge_cli.main import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (get_settings().prefect_home / "server.pid").exists(), "validation must precede server start"
