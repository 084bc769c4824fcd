"""The template library: load it from YAML, check it against the content policy, filter it.

Templates are data (``templates.yaml``) so that adding a scene never means editing code. Loading
validates every entry with the ``Template`` model and refuses explicit wording, so a bad library
file fails at startup with a message naming the template, never halfway through a batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from contentforge.catalog.selection import RELATED_NICHES, select_templates
from contentforge.domain.models import Template, TemplateTier
from contentforge.errors import InvalidInput

__all__ = [
    "DEFAULT_TEMPLATES_PATH",
    "EXPLICIT_TERMS",
    "RELATED_NICHES",
    "categories",
    "explicit_terms_in",
    "filter_templates",
    "load_templates",
    "select_templates",
]

DEFAULT_TEMPLATES_PATH = Path(__file__).with_name("templates.yaml")

EXPLICIT_TERMS: tuple[str, ...] = (
    "nsfw", "nude", "nudes", "nudity", "naked", "topless", "bottomless", "undressed", "undressing",
    "explicit", "sexual", "sexy", "sex", "porn", "pornographic", "erotic", "erotica", "fetish",
    "boudoir", "stripper", "lingerie", "underwear", "bra", "thong", "g-string", "see-through",
    "cleavage", "busty", "breast", "breasts", "butt", "buttocks", "crotch", "genital", "genitals",
    "nipple", "nipples", "midriff", "thigh", "thighs",
    "child", "children", "kid", "kids", "minor", "minors", "teen", "teens", "teenager", "teenage",
    "underage", "schoolgirl", "schoolboy", "loli",
)  # fmt: skip
"""Words that break the content policy in any positive prompt or template: explicit content,
body-part focus, or minors. Matched as whole words, case-insensitively."""

_EXPLICIT_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(t) for t in sorted(EXPLICIT_TERMS, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)


def explicit_terms_in(text: str) -> list[str]:
    """The policy-breaking terms found in ``text`` (lower case, in order of appearance, no repeats)."""
    found: list[str] = []
    for match in _EXPLICIT_RE.finditer(text):
        term = match.group(0).lower()
        if term not in found:
            found.append(term)
    return found


def _policy_violations(template: Template) -> list[str]:
    fields = {
        "prompt": template.prompt,
        "pose": template.pose,
        "lighting": template.lighting,
        "camera_angle": template.camera_angle,
        "tags": " ".join(template.tags),
    }
    return [
        f"{name}: {', '.join(terms)}" for name, text in fields.items() if (terms := explicit_terms_in(text))
    ]


def _read_entries(path: Path) -> list[object]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidInput(f"template library {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"template library {path} is not valid YAML: {exc}") from exc
    entries = raw.get("templates") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput(f"template library {path} must be a mapping with a 'templates' list")
    return entries


def _parse(path: Path) -> tuple[Template, ...]:
    problems: list[str] = []
    templates: list[Template] = []
    seen: set[str] = set()
    for index, entry in enumerate(_read_entries(path)):
        label = entry.get("id", f"#{index}") if isinstance(entry, dict) else f"#{index}"
        try:
            template = Template.model_validate(entry)
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors()
            )
            problems.append(f"template {label}: {details}")
            continue
        if template.id in seen:
            problems.append(f"template {template.id}: duplicate id")
        seen.add(template.id)
        if violations := _policy_violations(template):
            problems.append(f"template {template.id}: breaks the content policy ({'; '.join(violations)})")
        templates.append(template)
    if not templates and not problems:
        problems.append("no templates defined")
    if problems:
        raise InvalidInput(f"template library {path} is invalid: " + " | ".join(problems))
    return tuple(templates)


@lru_cache(maxsize=1)
def _default_library() -> tuple[Template, ...]:
    return _parse(DEFAULT_TEMPLATES_PATH)


def load_templates(path: Path | None = None) -> list[Template]:
    """Load and validate a template library; the bundled one is parsed once per process.

    Raises ``InvalidInput`` listing every bad entry (schema errors, duplicate ids, policy terms).
    """
    if path is None:
        return list(_default_library())
    return list(_parse(Path(path)))


def filter_templates(
    templates: Iterable[Template],
    *,
    category: str | None = None,
    tier: TemplateTier | None = None,
    tags: Iterable[str] = (),
    niche: str | None = None,
) -> list[Template]:
    """Templates matching every given criterion; ``tags`` must all be present (case-insensitive)."""
    wanted_tags = {t.strip().lower() for t in tags if t.strip()}
    wanted_category = category.strip().lower() if category else None
    wanted_niche = niche.strip().lower() if niche else None
    return [
        t
        for t in templates
        if (wanted_category is None or t.category.lower() == wanted_category)
        and (tier is None or t.tier == tier)
        and wanted_tags <= {tag.lower() for tag in t.tags}
        and (wanted_niche is None or wanted_niche in {n.lower() for n in t.niches})
    ]


def categories(templates: Iterable[Template]) -> list[str]:
    """The distinct categories, sorted, for listings and CLI help."""
    return sorted({t.category for t in templates})
