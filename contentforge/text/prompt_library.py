"""Versioned prompt templates stored as files: ``prompt_templates/<name>.v<N>.md``.

A template file has a ``## system`` and a ``## user`` section; fields are ``$name`` placeholders
(``string.Template``, so JSON braces in a prompt need no escaping). The id ``<name>.v<N>`` is
recorded with every result so a caption or image prompt can be traced to the wording that asked
for it. Changing a prompt means adding ``v<N+1>``, never editing a released version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from contentforge.errors import InvalidInput

PROMPTS_DIR = Path(__file__).with_name("prompt_templates")
_FILE_RE = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)\.md$")
_SECTION_RE = re.compile(r"^##[ \t]+(system|user)[ \t]*$", re.MULTILINE | re.IGNORECASE)
_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)


@dataclass(frozen=True)
class PromptTemplate:
    """One version of one prompt."""

    name: str
    version: int
    system: str
    user: str

    @property
    def id(self) -> str:
        """``hooks.v1``: what results record as their prompt version."""
        return f"{self.name}.v{self.version}"

    def render(self, **fields: object) -> tuple[str, str]:
        """``(system, user)`` with every ``$field`` filled; a missing field is an ``InvalidInput``."""
        values = {key: str(value) for key, value in fields.items()}
        try:
            return Template(self.system).substitute(values), Template(self.user).substitute(values)
        except KeyError as exc:
            raise InvalidInput(f"prompt {self.id} needs the field {exc.args[0]!r}") from None


def _versions(name: str, directory: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for path in directory.glob(f"{name}.v*.md"):
        match = _FILE_RE.match(path.name)
        if match and match["name"] == name:
            found[int(match["version"])] = path
    return found


def _parse(path: Path, name: str, version: int) -> PromptTemplate:
    text = _COMMENT_RE.sub("", path.read_text(encoding="utf-8"))
    parts = _SECTION_RE.split(text)
    sections = {parts[i].lower(): parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    if not sections.get("user"):
        raise InvalidInput(f"prompt file {path} has no '## user' section")
    return PromptTemplate(
        name=name, version=version, system=sections.get("system", ""), user=sections["user"]
    )


def load_prompt(name: str, version: int | None = None, *, directory: Path | None = None) -> PromptTemplate:
    """The prompt ``name`` at ``version`` (default: the highest version present)."""
    directory = directory or PROMPTS_DIR
    versions = _versions(name, directory)
    if not versions:
        raise InvalidInput(f"no prompt named {name!r} in {directory}")
    chosen = max(versions) if version is None else version
    if chosen not in versions:
        raise InvalidInput(f"prompt {name!r} has no version {chosen}; available: {sorted(versions)}")
    return _parse(versions[chosen], name, chosen)


def prompt_text(name: str, version: int | None = None) -> tuple[str, str]:
    """``(user prompt text, version id)``: the raw template and the id results record."""
    template = load_prompt(name, version)
    return template.user, template.id
