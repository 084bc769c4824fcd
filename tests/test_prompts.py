"""Image prompts: trigger word placement, composition, negative prompt and the content policy."""

from __future__ import annotations

import re

import pytest

from contentforge.catalog import load_templates
from contentforge.domain.models import LoraSpec, Persona, Template, TemplateTier
from contentforge.errors import InvalidInput
from contentforge.text.prompts import ImagePrompt, build_image_prompt

LIBRARY = load_templates()
EXPLICIT = re.compile(
    r"\b(?:nsfw|nud(?:e|es|ity)|naked|topless|explicit|sexual|sexy|porn\w*|erotic\w*|fetish|lingerie|"
    r"underwear|bra|thong|see-through|cleavage|busty|breasts?|butt(?:ocks)?|nipples?|genitals?|"
    r"child(?:ren)?|kids?|teens?|minors?|underage)\b",
    re.IGNORECASE,
)


def _persona(lora: LoraSpec | None = None, **overrides: object) -> Persona:
    fields: dict[str, object] = {
        "id": "a1b2c3d4e5f6",
        "name": "Maya Lin",
        "niche": "fitness",
        "appearance": "athletic woman in her late twenties with shoulder-length dark hair and freckles",
        "personality_traits": ["disciplined"],
        "interests": ["trail running"],
        "tone": "warm",
        "platforms": ["instagram"],
        "lora": lora,
    }
    return Persona(**(fields | overrides))


def _template(template_id: str) -> Template:
    return next(t for t in LIBRARY if t.id == template_id)


def test_no_lora_means_no_trigger_word() -> None:
    prompt = build_image_prompt(_persona(), _template("FIT-001")).prompt
    assert "TOK_" not in prompt
    assert prompt.startswith("athletic woman in her late twenties")


def test_default_trigger_word_comes_first() -> None:
    persona = _persona(LoraSpec(source="personas/maya.safetensors"))
    assert persona.trigger_word == "TOK_a1b2c3d4"
    prompt = build_image_prompt(persona, _template("FIT-001")).prompt
    assert prompt.startswith("TOK_a1b2c3d4, athletic woman")
    assert prompt.count("TOK_a1b2c3d4") == 1


def test_own_trigger_word_replaces_the_default() -> None:
    persona = _persona(LoraSpec(source="hub/maya-lora", trigger_word="mayalin"))
    prompt = build_image_prompt(persona, _template("FIT-001")).prompt
    assert prompt.startswith("mayalin, ")
    assert "TOK_" not in prompt


def test_prompt_combines_persona_and_every_template_field_in_order() -> None:
    template = _template("URB-001")
    prompt = build_image_prompt(_persona(), template).prompt
    pieces = [
        "athletic woman in her late twenties",
        " ".join(template.prompt.split()).rstrip("."),
        template.pose,
        template.lighting,
        template.camera_angle,
        "photorealistic",
    ]
    positions = [prompt.find(piece) for piece in pieces]
    assert -1 not in positions, prompt
    assert positions == sorted(positions)
    assert "\n" not in prompt and "  " not in prompt


def test_negative_prompt_excludes_nudity_and_poor_quality() -> None:
    negative = build_image_prompt(_persona(), _template("BCH-004")).negative_prompt
    for term in ("nsfw", "nudity", "lowres", "blurry", "bad anatomy", "watermark", "underage"):
        assert term in negative


@pytest.mark.parametrize("template", LIBRARY, ids=lambda t: t.id)
def test_positive_prompts_never_contain_explicit_words(template: Template) -> None:
    persona = _persona(LoraSpec(source="x.safetensors"))
    result = build_image_prompt(persona, template)
    assert isinstance(result, ImagePrompt)
    assert EXPLICIT.findall(result.prompt) == []
    assert "nsfw" in result.negative_prompt


def test_suggestive_templates_get_tasteful_styling_and_safe_ones_do_not() -> None:
    for template in LIBRARY:
        prompt = build_image_prompt(_persona(), template).prompt
        assert ("tasteful, elegant" in prompt) == (template.tier == TemplateTier.suggestive), template.id


@pytest.mark.parametrize("appearance", ["topless woman on a beach", "a teen with red hair", "woman, NSFW"])
def test_policy_breaking_appearance_is_refused(appearance: str) -> None:
    with pytest.raises(InvalidInput, match="content policy"):
        build_image_prompt(_persona(appearance=appearance), _template("LIF-001"))


def test_prompts_are_deterministic() -> None:
    persona, template = _persona(), _template("FAS-005")
    assert build_image_prompt(persona, template) == build_image_prompt(persona, template)
