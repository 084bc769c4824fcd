"""Persona files and the concurrency figures used by the benchmark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contentforge.errors import InvalidPersona
from contentforge.metrics import concurrency_figures
from contentforge.personas import load_persona_file, sample_persona


def test_sample_persona_and_default_trigger_word() -> None:
    persona = sample_persona()
    assert persona.id == "mia-fit" and persona.niche == "fitness"
    assert persona.trigger_word is None
    with_lora = type(persona).model_validate(persona.model_dump() | {"lora": {"source": "x.safetensors"}})
    assert with_lora.trigger_word == "TOK_mia-fit"
    assert with_lora.lora is not None and with_lora.lora.scale == 0.8


def test_persona_from_json_and_yaml(tmp_path: Path) -> None:
    data = sample_persona().model_dump_json()
    (tmp_path / "p.json").write_text(data)
    (tmp_path / "p.yaml").write_text(
        "id: ok-1\nname: Ok\nniche: Travel\nappearance: tall\n"
        "personality_traits: [calm]\ninterests: [maps]\ntone: warm\n"
        "timezone: Asia/Tokyo\nplatforms: [x]\n"
    )
    assert load_persona_file(tmp_path / "p.json") == sample_persona()
    assert load_persona_file(tmp_path / "p.yaml").niche == "travel"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id: Bad Id\nname: x", "id"),
        ("- just\n- a list", "mapping"),
        (
            "id: ok\nname: Ok\nniche: n\nappearance: a\npersonality_traits: [a]\ninterests: [b]\n"
            "tone: t\ntimezone: Mars/Base\nplatforms: [x]\n",
            "unknown timezone",
        ),
        (
            "id: ok\nname: Ok\nniche: n\nappearance: a\npersonality_traits: [a]\ninterests: [b]\n"
            "tone: t\nplatforms: [myspace]\n",
            "platforms",
        ),
        ("{unclosed", "not valid"),
    ],
)
def test_bad_persona_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InvalidPersona, match=message):
        load_persona_file(path)


def test_concurrency_figures() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    s = timedelta(seconds=1)
    # two overlapping, one touching the end of another (no overlap), over a 3 s phase
    spans = [(t0, t0 + 2 * s), (t0 + s, t0 + 2 * s), (t0 + 2 * s, t0 + 3 * s)]
    figures = concurrency_figures(spans, slots=2)
    assert figures.peak_concurrent == 2
    assert figures.busy_seconds == pytest.approx(4.0)
    assert figures.slot_utilization == pytest.approx(4.0 / (2 * 3.0))
    assert concurrency_figures([], slots=5).pieces == 0


def test_the_summary_links_the_review_gallery_only_when_given() -> None:
    from contentforge.db import BatchStats
    from contentforge.summary import batch_summary_markdown

    stats = BatchStats(
        batch_id="b1",
        status="completed",
        num_pieces=2,
        pieces=2,
        generated=2,
        hooks=10,
        by_status={"ready": 1, "needs_review": 1},
        by_verdict={"safe": 2},
        by_tier={"safe": 2},
        by_template_tier={"safe": 2},
        cost_usd_total=0.02,
        cost_usd_by_kind={"image": 0.02},
        cost_usd_mean=0.01,
        generation_seconds_mean=None,
    )
    linked = batch_summary_markdown(stats, [], "http://127.0.0.1:8000/gallery/batches/b1")
    assert "[Review gallery](http://127.0.0.1:8000/gallery/batches/b1)" in linked
    assert "| needs_review | 1 |" in linked
    assert "Review gallery" not in batch_summary_markdown(stats, [])
