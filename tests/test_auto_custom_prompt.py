"""AUTO mode recommends for the prompt that will be generated: a request's own prompt, not the templates'.

A batch started with ``image_params={"prompt": ...}`` generates that prompt for every piece; its LoRAs and
parameters must be chosen for it. The registry holds a LoRA described for the beach ("seaside-light")
and one for the gym ("iron-gym"); some of the fitness persona's templates are beach scenes, the user's
prompt is a gym one. Before the fix AUTO read the templates' prompts, picked for them, and the user's
prompt then replaced the planned one, dropping the chosen LoRA's trigger word.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from support.loras import register_lora

from contentforge.config import get_settings
from contentforge.db import Repository
from contentforge.personas import sample_persona

GYM = "lifting heavy barbell weights during a gym workout"


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from contentforge.images.tiny import build_tiny_lora, build_tiny_sdxl_pipeline

    folder = tmp_path_factory.mktemp("custom-prompt-loras")
    return build_tiny_lora(build_tiny_sdxl_pipeline(0), folder / "seaside.safetensors", 1)


@pytest.fixture
def repo(settings_env: Path, lora_file: Path, monkeypatch: pytest.MonkeyPatch) -> Repository:
    from contentforge.db.registry import ModelRegistry
    from tasks import resources

    monkeypatch.setenv("CONTENTFORGE_LORA_MAX_COUNT", "1")  # the best match alone, so the choice shows
    get_settings.cache_clear()

    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    registry = ModelRegistry(repo.sessions)
    for name, trigger, tags, description in (
        (
            "seaside-light",
            "sunlit seaside",
            ("beach", "surf", "ocean"),
            "sunny beach, surfing and ocean waves",
        ),
        ("iron-gym", "chalked hands", ("gym", "weights", "workout"), "gym workout, lifting weights, fitness"),
    ):
        register_lora(registry, name, lora_file, trigger=trigger, tags=tags, description=description)
    return repo


def test_auto_plans_for_the_requests_own_prompt_when_one_is_given(repo: Repository) -> None:
    from contentforge.batch import validate_batch_request
    from tasks.mode_plans import recommend_plans
    from tasks.planning import select_templates_and_prompts, take_batch

    def planned(prompt: str | None) -> list[tuple[str, tuple[str, ...]]]:
        batch_id = f"custom-{uuid.uuid4().hex[:8]}"
        request = validate_batch_request(
            repo, get_settings(), persona="mia-fit", platform="instagram", tier_mix=None, batch_id=batch_id,
            mode="auto", num_pieces=3, include_hooks=False, safety_check=False, seed=5,
        )  # fmt: skip
        take_batch.fn(request, batch_id, None, "test-run")
        piece_ids = select_templates_and_prompts.fn(request, batch_id)
        plans = recommend_plans.fn(request, batch_id, piece_ids, prompt)
        assert set(plans) == set(piece_ids)
        return [(plan.request.prompt, plan.lora_names) for plan in plans.values()]

    from_templates = planned(None)
    assert ("seaside-light",) in [names for _, names in from_templates], from_templates  # a shoreline one
    assert all(GYM not in prompt for prompt, _ in from_templates)
    for prompt, names in planned(GYM):
        assert names == ("iron-gym",), (prompt, names)
        # The user's prompt, after the chosen LoRA's trigger word.
        assert prompt.startswith("chalked hands, ") and prompt.endswith(GYM), prompt


@pytest.mark.slow
def test_an_auto_batch_with_its_own_prompt_generates_it_with_the_loras_chosen_for_it(
    repo: Repository, prefect_server: str
) -> None:
    from flows.produce_content_batch import produce_content_batch
    from tasks.bootstrap import ensure_concurrency_limit

    settings = get_settings()
    ensure_concurrency_limit(settings.concurrency_limit_name, settings.generation_slots)
    stats = produce_content_batch(
        persona="mia-fit", num_pieces=2, mode="auto", image_params={"prompt": GYM, "steps": 3},
        include_hooks=False, safety_check=False, seed=5,
    )  # fmt: skip
    rows = repo.pieces(batch_id=stats["batch_id"])
    assert len(rows) == 2
    for row in rows:
        record = row.record
        assert record is not None, row.error
        assert record.prompt.startswith("chalked hands, ") and record.prompt.endswith(GYM), record.prompt
        assert "LoRA iron-gym" in record.extra["decision"] and "seaside" not in record.extra["decision"]
        assert record.steps == 3  # the request's own parameters still win over the plan's
        assert len(record.loras) == 1
