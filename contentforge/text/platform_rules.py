"""Per-platform caption rules (data in ``platform_rules.yaml``) and the checks that apply them.

Captions are checked, not trusted: each platform has its own limits and X counts characters by
weight, so one validator measures a caption the way the platform will. ``check_caption`` returns
human-readable violations so a writer (offline or model-backed) can be tested against the same
rules a publisher would hit.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import regex
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contentforge.domain.models import Platform
from contentforge.errors import InvalidInput

DEFAULT_RULES_PATH = Path(__file__).with_name("platform_rules.yaml")

# --- X (twitter-text config v3) weighted counting ------------------------------------------------
# Code points in these ranges weigh 1; everything else (CJK, most symbols) weighs 2. A URL of any
# length weighs 23 and an emoji sequence of any length weighs 2.
_LIGHT_RANGES: tuple[tuple[int, int], ...] = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
URL_WEIGHT = 23
EMOJI_WEIGHT = 2

# Emoji come from the Unicode emoji data (UTS #51) that the ``regex`` module ships and updates with
# each Unicode version, not from hand-kept code point ranges. An emoji is what a reader sees as one:
# a keycap, a flag, or a ZWJ sequence of pictographs with their skin tones, VS16 and tags. A
# pictograph that defaults to text (©, ™, ❤, ▪) is an emoji only when presented as one: with VS16,
# a skin tone or inside a ZWJ sequence; a symbol that is no emoji at all (★, →) never is.
_TAGS = r"[\U000e0020-\U000e007e]+\U000e007f"
_MODIFIERS = rf"(?:\ufe0f|\p{{Emoji_Modifier}}|{_TAGS})*"
_PRESENTED = (
    r"(?:\p{Emoji_Presentation}"
    r"|\p{Emoji_Modifier_Base}(?=\p{Emoji_Modifier})"
    r"|\p{Extended_Pictographic}(?=\ufe0f))"
)
_PICTOGRAPH = rf"(?:{_PRESENTED}|\p{{Extended_Pictographic}}){_MODIFIERS}"
EMOJI_PATTERN = (
    r"[0-9#*]\ufe0f?\u20e3"  # keycaps
    r"|\p{Regional_Indicator}{2}"  # flags
    rf"|{_PRESENTED}{_MODIFIERS}(?:\u200d{_PICTOGRAPH})*"  # toned, VS16 and ZWJ sequences
    rf"|\p{{Extended_Pictographic}}{_MODIFIERS}(?:\u200d{_PICTOGRAPH})+"  # ❤‍🔥 without VS16
)
EMOJI_RE = regex.compile(EMOJI_PATTERN)
_GRAPHEME_RE = regex.compile(r"\X")

_URL_CHARS = r"[\w\-./?=&%#:~+@!$*,;'()\[\]]"
_URL_END = r"[\w\-/=&%#~+]"
_TLDS = "com|org|net|io|co|ai|app|dev|me|ly|tv|gg|shop|store|link|xyz|info|biz|us|uk|de|fr|es|it|nl|ca|au"
URL_PATTERN = (
    rf"(?:https?://|www\.){_URL_CHARS}*{_URL_END}"
    rf"|(?<![\w@.\-])(?:[a-z0-9](?:[a-z0-9\-]{{0,61}}[a-z0-9])?\.)+(?:{_TLDS})\b(?!@)(?:/{_URL_CHARS}*{_URL_END})?"
)
_TOKEN_RE = regex.compile(rf"(?P<url>{URL_PATTERN})|(?P<emoji>{EMOJI_PATTERN})", regex.IGNORECASE)
_HASHTAG_RE = re.compile(r"^\w*[^\W\d_]\w*$")
_INLINE_HASHTAG_RE = re.compile(r"(?<![\w&#])#(\w*[^\W\d_]\w*)")


def _char_weight(char: str) -> int:
    code = ord(char)
    return 1 if any(low <= code <= high for low, high in _LIGHT_RANGES) else 2


def _shortened_by_x(url: str) -> bool:
    """Whether X takes ``url`` for a link (23): each host label fits DNS, 63 bytes (punycode if IDN)."""
    host = regex.sub(r"^https?://", "", url, flags=regex.IGNORECASE)
    host = regex.split(r"[/?#]", host, maxsplit=1)[0].rsplit("@", 1)[-1]
    if host.startswith("["):  # an IPv6 literal
        return True
    for label in regex.sub(r":\d*$", "", host).split("."):
        try:
            encoded = label.encode("ascii")
        except UnicodeEncodeError:
            encoded = b"xn--" + label.encode("punycode")
        if not 0 < len(encoded) <= 63:
            return False
    return True


def weighted_length(text: str) -> int:
    """Length as X counts it (twitter-text v3): URL 23, emoji 2, CJK/wide 2, others 1, after NFC."""
    text = unicodedata.normalize("NFC", text)
    total = 0
    position = 0
    for match in _TOKEN_RE.finditer(text):
        if match.group("url") and not _shortened_by_x(match.group("url")):
            continue  # not a link X would wrap in t.co: its characters count one by one
        total += sum(_char_weight(c) for c in text[position : match.start()])
        total += URL_WEIGHT if match.group("url") else EMOJI_WEIGHT
        position = match.end()
    return total + sum(_char_weight(c) for c in text[position:])


def count_emoji(text: str) -> int:
    """Emoji as a reader sees them: a ZWJ family, a flag or a toned thumbs-up is one."""
    return len(EMOJI_RE.findall(text))


def strip_emoji(text: str) -> str:
    """``text`` without emoji, with the spaces they leave collapsed."""
    return " ".join(EMOJI_RE.sub(" ", text).split())


def graphemes(text: str) -> list[str]:
    """``text`` as user-perceived characters (Unicode extended grapheme clusters, ``regex``'s ``\\X``):
    a ZWJ family, a flag, a toned emoji, a letter with its combining marks or a Hangul syllable is one."""
    return _GRAPHEME_RE.findall(text)


def trim_text(text: str, limit: int, measure: Callable[[str], int] = len, ellipsis: str = "…") -> str:
    """Shorten ``text`` to ``measure(result) <= limit``, cutting at a word boundary, never inside an emoji.

    Falls back to cutting between grapheme clusters only when the first word alone is too long, so a
    cut never splits an emoji sequence, a flag or a letter from its accents.
    """
    if measure(text) <= limit:
        return text
    if limit <= 0:
        return ""
    # Every word measures at least 1, so more than ``limit`` words never fit: capping them keeps this
    # linear in the text however long it is (each candidate is measured whole).
    words = text.split()[: limit + 1]
    while words:
        candidate = " ".join(words).rstrip(" ,;:-–—") + ellipsis
        if measure(candidate) <= limit:
            return candidate
        words.pop()
    kept = ""
    for atom in graphemes(text):
        if measure(kept + atom + ellipsis) > limit:
            break
        kept += atom
    return kept + ellipsis if kept and measure(kept + ellipsis) <= limit else kept


# --- rules as data -------------------------------------------------------------------------------
_CTA_FIELDS = frozenset({"category", "interest", "name"})


WEIGHTED_NOTE = " (X counts emoji and wide characters as 2 and any link as 23)"
"""What a hook prompt adds for a platform that counts weighted characters (X)."""


class PlatformRules(BaseModel):
    """One platform's caption limits, emoji range, hashtag limit and tone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    platform: Platform
    max_chars: int = Field(gt=0)
    hook_max_chars: int = Field(gt=0)
    weighted: bool = False
    max_hashtags: int = Field(ge=0)
    hashtag_count: int = Field(ge=0, description="How many hashtags a writer aims for.")
    emoji_min: int = Field(ge=0)
    emoji_max: int = Field(ge=0)
    tone: str = Field(min_length=1)
    calls_to_action: tuple[str, ...] = Field(min_length=1)

    @field_validator("calls_to_action")
    @classmethod
    def _plain_templates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cta in value:
            fields = {name for _, name, _, _ in string.Formatter().parse(cta) if name is not None}
            if unknown := fields - _CTA_FIELDS:
                raise ValueError(f"call to action {cta!r} uses unknown fields {sorted(unknown)}")
            if count_emoji(cta):
                raise ValueError(f"call to action {cta!r} must not contain emoji (the writer adds them)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PlatformRules:
        if self.hook_max_chars > self.max_chars:
            raise ValueError("hook_max_chars exceeds max_chars")
        if self.hashtag_count > self.max_hashtags:
            raise ValueError("hashtag_count exceeds max_hashtags")
        if self.emoji_min > self.emoji_max:
            raise ValueError("emoji_min exceeds emoji_max")
        return self

    def measure(self, text: str) -> int:
        """Length of ``text`` as this platform counts it."""
        return weighted_length(text) if self.weighted else len(text)

    def prompt_fields(self) -> dict[str, object]:
        """The rules as a hook prompt states them: one place, so every hook prompt says the same."""
        return {
            "platform": self.platform.value,
            "platform_tone": self.tone,
            "hook_max_chars": self.hook_max_chars,
            "max_chars": self.max_chars,
            "weighted_note": WEIGHTED_NOTE if self.weighted else "",
            "emoji_min": self.emoji_min,
            "emoji_max": self.emoji_max,
            "hashtag_count": self.hashtag_count,
        }


def _parse_rules(raw: object, source: str) -> dict[Platform, PlatformRules]:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"platform rules {source} must be a mapping of platform name to rules")
    known = {p.value for p in Platform}
    problems = [f"unknown platform {name!r}" for name in raw if name not in known]
    problems += [f"missing platform {name!r}" for name in sorted(known - set(raw))]
    rules: dict[Platform, PlatformRules] = {}
    for name, fields in raw.items():
        if name not in known:
            continue
        try:
            rules[Platform(name)] = PlatformRules.model_validate({**(fields or {}), "platform": name})
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            problems.append(f"{name}: {details}")
    if problems:
        raise InvalidInput(f"platform rules {source} are invalid: " + " | ".join(problems))
    return rules


def load_platform_rules(path: Path | None = None) -> dict[Platform, PlatformRules]:
    """Load and validate the rules file; the bundled one is parsed once per process."""
    if path is None:
        return dict(_default_rules())
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read platform rules {path}: {exc}") from exc
    return _parse_rules(raw, str(path))


@lru_cache(maxsize=1)
def _default_rules() -> dict[Platform, PlatformRules]:
    return _parse_rules(
        yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8")), str(DEFAULT_RULES_PATH)
    )


_ALIASES = {"twitter": "x"}


def rules_for(platform: Platform | str) -> PlatformRules:
    """The rules for ``platform`` (a ``Platform`` or its name; "twitter" means x)."""
    name = str(platform).strip().lower()
    name = _ALIASES.get(name, name)
    rules = _default_rules()
    try:
        return rules[Platform(name)]
    except ValueError:
        known = ", ".join(p.value for p in Platform)
        raise InvalidInput(f"unknown platform {str(platform)!r}; known platforms: {known}") from None


# --- validation ----------------------------------------------------------------------------------
def _full_caption(text: str, hashtags: Iterable[str]) -> str:
    """The published caption: ``text`` plus a hashtag line for tags not already written inline."""
    inline = {t.lower() for t in _INLINE_HASHTAG_RE.findall(text)}
    missing = [t for t in hashtags if t.lower() not in inline]
    body = text.rstrip()
    return body + ("\n\n" + " ".join(f"#{t}" for t in missing) if missing else "")


def check_caption(text: str, hashtags: list[str], platform: Platform | str) -> list[str]:
    """Every way the caption breaks the platform's rules, in words; empty when it is publishable.

    ``text`` may be the body alone or the full caption (``Hook.caption``): hashtags already present
    inline are not counted twice. ``hashtags`` are given without ``#``.
    """
    rules = rules_for(platform)
    unit = "weighted chars" if rules.weighted else "chars"
    violations: list[str] = []
    if not text.strip():
        violations.append("caption text is empty")
    seen: set[str] = set()
    for tag in hashtags:
        if not _HASHTAG_RE.match(tag):
            violations.append(f"hashtag {tag!r} is invalid (letters, digits or '_' with a letter; no '#')")
        if tag.lower() in seen:
            violations.append(f"hashtag {tag!r} is repeated")
        seen.add(tag.lower())
    all_tags = seen | {t.lower() for t in _INLINE_HASHTAG_RE.findall(text)}
    if len(all_tags) > rules.max_hashtags:
        violations.append(
            f"{len(all_tags)} hashtags, {rules.platform.value} allows at most {rules.max_hashtags}"
        )
    full = _full_caption(text, hashtags)
    length = rules.measure(full)
    if length > rules.max_chars:
        violations.append(f"caption is {length} {unit}, {rules.platform.value} allows {rules.max_chars}")
    first_line = next((line for line in text.strip().splitlines() if line.strip()), "")
    hook_length = rules.measure(first_line)
    if hook_length > rules.hook_max_chars:
        violations.append(
            f"hook line is {hook_length} {unit}, {rules.platform.value} shows {rules.hook_max_chars}"
        )
    emoji = count_emoji(full)
    if not rules.emoji_min <= emoji <= rules.emoji_max:
        violations.append(
            f"{emoji} emoji, {rules.platform.value} wants {rules.emoji_min} to {rules.emoji_max}"
        )
    return violations
