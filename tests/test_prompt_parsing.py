"""Compel's prompts parsed once per distinct prompt, with packrat parsing (``prompt_parsing``): the
same parse and the same embeddings as compel's own parsing, and no prompt parsed twice."""

from __future__ import annotations

from collections.abc import Iterator

import pyparsing
import pytest
import torch
from compel import CompelForSD, CompelForSDXL
from compel.prompt_parser import PromptParser

from contentforge.images import prompt_parsing
from contentforge.images.prompt_parsing import parse_prompt, share_parses
from contentforge.images.tiny import build_tiny_sd15_pipeline, build_tiny_sdxl_pipeline

PROMPTS = [
    "",
    "a portrait of a traveler on a cliff at golden hour, soft rim light, film grain",
    "a (red:1.3) scarf, (blurry background)-, a calm sea++",
    '("a cat in a forest", "an oil painting").and()',
    '("a cat", "a dog").blend(0.7, 0.3)',
    "no commas,between,words, and (nested (weights:1.2):0.8)",
]


@pytest.fixture
def fresh_parsing() -> Iterator[None]:
    """No packrat memo and an empty prompt cache before each test, as in a new process; pyparsing's
    process-wide switch as it was afterwards (matplotlib's mathtext turns it on too)."""
    was_on = pyparsing.ParserElement._packratEnabled
    pyparsing.ParserElement.disable_memoization()
    parse_prompt.cache_clear()
    yield
    parse_prompt.cache_clear()
    pyparsing.ParserElement.disable_memoization()
    if was_on:
        pyparsing.ParserElement.enable_packrat()


def test_each_prompt_parses_as_compels_own_parser_parses_it(fresh_parsing: None) -> None:
    expected = [PromptParser().parse_conjunction(prompt) for prompt in PROMPTS]  # without packrat
    share_parses(CompelForSD(build_tiny_sd15_pipeline(0)))  # turns packrat parsing on
    assert [parse_prompt(prompt) for prompt in PROMPTS] == expected
    assert parse_prompt.cache_info().misses == len(PROMPTS)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_embeddings_are_compels_own_and_each_prompt_is_parsed_once(
    family: str, fresh_parsing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapper = CompelForSDXL if family == "sdxl" else CompelForSD
    build = build_tiny_sdxl_pipeline if family == "sdxl" else build_tiny_sd15_pipeline
    pipe = build(0)
    prompts = [PROMPTS[1], PROMPTS[2]]
    negative = "lowres, (watermark:1.4), text"
    plain = wrapper(pipe)
    expected = [plain(prompt, negative_prompt=negative) for prompt in prompts]

    parses: list[str] = []
    parse = PromptParser.parse_conjunction

    def counted(self: PromptParser, prompt: str, verbose: bool = False) -> object:
        parses.append(prompt)
        return parse(self, prompt, verbose)

    monkeypatch.setattr(PromptParser, "parse_conjunction", counted)
    shared = share_parses(wrapper(pipe))
    got = [shared(prompt, negative_prompt=negative) for prompt in prompts]
    for mine, theirs in zip(got, expected, strict=True):
        assert torch.equal(mine.embeds, theirs.embeds)
        assert torch.equal(mine.negative_embeds, theirs.negative_embeds)
        if family == "sdxl":
            assert torch.equal(mine.pooled_embeds, theirs.pooled_embeds)
            assert torch.equal(mine.negative_pooled_embeds, theirs.negative_pooled_embeds)
    # Each distinct prompt once, whatever the encoders and images: compel alone parses each prompt
    # and the negative once per encoder per image (8 for SDXL here).
    assert sorted(parses) == sorted({*prompts, negative})
    assert pyparsing.ParserElement._packratEnabled  # pyparsing's own switch


def test_the_cache_is_bounded() -> None:
    assert parse_prompt.cache_parameters()["maxsize"] == prompt_parsing.PARSED_PROMPTS_KEPT


def test_a_wrapper_holding_no_compel_is_left_to_compel_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Elsewhere:  # a compel release that keeps its encoders under other names
        encoders: tuple[object, ...] = ()

    wrapper = Elsewhere()
    with caplog.at_level("WARNING", logger="contentforge.images.prompt_parsing"):
        assert share_parses(wrapper) is wrapper
    assert "holds no Compel" in caplog.text and "Elsewhere" in caplog.text
