"""Image prompts: persona plus template, in the order diffusion models weigh them.

The LoRA trigger word goes first because early tokens carry the most weight and the trigger is
what makes the persona recognisable. Appearance comes next, then the scene, pose, light and
camera, then quality words. The negative prompt always excludes nudity and minors, whatever the
tier, and a positive prompt containing policy-breaking words is refused before any GPU time.
"""

from __future__ import annotations

from dataclasses import dataclass

from contentforge.catalog import explicit_terms_in
from contentforge.domain.models import Persona, Template, TemplateTier
from contentforge.errors import InvalidInput

QUALITY_TERMS = "photorealistic, high detail, natural skin texture, sharp focus, professional photography"
SUGGESTIVE_STYLING = "tasteful, elegant, fully styled outfit, editorial"
"""Added for suggestive templates so the model leans to fashion editorial, not provocation."""

SAFETY_NEGATIVES = (
    "nsfw, nudity, nude, naked, topless, explicit, sexual, lingerie, underwear, see-through clothing, "
    "cleavage, provocative pose, child, minor, underage"
)
QUALITY_NEGATIVES = (
    "lowres, worst quality, low quality, blurry, out of focus, jpeg artifacts, watermark, text, logo, "
    "signature, deformed, disfigured, bad anatomy, bad hands, extra fingers, extra limbs, cropped"
)


@dataclass(frozen=True)
class ImagePrompt:
    """A positive and negative prompt pair, ready for any diffusion backend."""

    prompt: str
    negative_prompt: str


def _part(text: str) -> str:
    return " ".join(text.split()).strip().rstrip(".,;")


def build_image_prompt(persona: Persona, template: Template) -> ImagePrompt:
    """Combine persona and template into a prompt; raises ``InvalidInput`` if it breaks the policy."""
    parts = [
        persona.trigger_word or "",
        persona.appearance,
        template.prompt,
        template.pose,
        template.lighting,
        template.camera_angle,
        SUGGESTIVE_STYLING if template.tier == TemplateTier.suggestive else "",
        QUALITY_TERMS,
    ]
    prompt = ", ".join(p for p in map(_part, parts) if p)
    if terms := explicit_terms_in(prompt):
        raise InvalidInput(
            f"prompt for persona {persona.name!r} and template {template.id} contains words the content "
            f"policy forbids ({', '.join(terms)}); edit the persona's appearance or the template"
        )
    return ImagePrompt(prompt=prompt, negative_prompt=f"{SAFETY_NEGATIVES}, {QUALITY_NEGATIVES}")
