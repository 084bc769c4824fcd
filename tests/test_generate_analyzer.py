"""``contentforge generate --mode auto`` reads the prompt through the configured text chain, as batches do.

With a model configured (a local server speaking the OpenAI Chat Completions API) the model's reading
of an oblique prompt ("expired Portra with heavy halation": no word of the film-grain LoRA's
description) is what the recommender uses, the record says who read the prompt, and the paid call is in
the cost ledger once. Without a model the rules read it and nothing is charged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.llm_fakes import FakeOpenAI
from support.loras import install_tiny_lora
from typer.testing import CliRunner

from contentforge.config import get_settings
from contentforge.db.models import API_REQUEST_STEPS
from contentforge.db.request_costs import RequestCostRepository
from contentforge.images.provenance import read_provenance
from contentforge_cli import context
from contentforge_cli.main import app

OBLIQUE = "a quiet harbour at dawn, shot on expired Portra with heavy halation"
ASPECTS = {
    "subject": "a quiet harbour",
    "style": ["analog 35mm film grain"],
    "lighting": ["dawn light"],
    "intent": "landscape",
}


@pytest.fixture
def installed(settings_env: Path, tmp_path: Path) -> CliRunner:
    about = "analog 35mm film photo with visible grain"
    install_tiny_lora(tmp_path, "film-grain", trigger="grainy35", description=about)
    return CliRunner()


def _generate(runner: CliRunner, out: Path) -> dict[str, object]:
    done = runner.invoke(app, ["generate", OBLIQUE, "--mode", "auto", "--out", str(out)])
    assert done.exit_code == 0, done.output
    record = read_provenance(out).record
    assert record is not None
    return record.extra


def _charged() -> tuple[int, float]:
    return RequestCostRepository(context.services().sessions).request_spend(API_REQUEST_STEPS[0])


def test_generate_auto_asks_the_configured_model_and_charges_its_reading(
    installed: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOpenAI("sk-test-generate") as server:
        server.text(json.dumps(ASPECTS), input_tokens=120, output_tokens=60)
        monkeypatch.setenv("CONTENTFORGE_TEXT_PROVIDERS", "openai,offline")
        monkeypatch.setenv("CONTENTFORGE_OPENAI_API_KEY", "sk-test-generate")
        monkeypatch.setenv("CONTENTFORGE_OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("CONTENTFORGE_OPENAI_MODEL", "gpt-test")
        get_settings.cache_clear()
        extra = _generate(installed, tmp_path / "model.png")
    assert len(server.requests) == 1 and OBLIQUE in server.requests[0].body["messages"][1]["content"]
    decision = str(extra["decision"])
    assert "prompt read by openai (gpt-test)" in decision, decision
    assert decision.startswith("LoRA film-grain"), decision  # matched through the model's named style
    assert _charged()[0] == 1, "the model's reading is in the ledger, once"


def test_generate_auto_without_a_model_reads_by_rules_and_charges_nothing(
    installed: CliRunner, tmp_path: Path
) -> None:
    decision = str(_generate(installed, tmp_path / "rules.png")["decision"])
    assert "prompt read by" not in decision, decision
    assert _charged() == (0, 0.0)
