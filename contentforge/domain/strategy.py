"""Strategy models: a brand's DNA, persona candidates, monthly topics, blog posts and social posts.

Every ``BrandDNA`` field is a ``Sourced`` value: either ``found`` with the URL (or uploaded
document) it came from and how it was obtained, or ``unknown``. Nothing is filled in without a
source, so a reader can check each data point, and an extractor that cannot support a value says
so instead of guessing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contentforge.domain.models import ID_PATTERN, Persona, Platform, slugify

V = TypeVar("V")

UNKNOWN = "unknown"
WORDS_PER_PAGE = 500
"""An A4 page of body text at 11-12 pt holds about 500 words; blog lengths are counted this way."""
BLOG_MIN_PAGES = 4
BLOG_MAX_PAGES = 10
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


class FieldMethod(StrEnum):
    """How a DNA value was obtained."""

    extracted = "extracted"
    """Read directly from the source (a tag, a heading, a sentence, a CSS rule)."""
    inferred = "inferred"
    """Computed from the source by a stated rule (keyword frequency, colour counts, price levels)."""
    model = "model"
    """Written by a language model and checked against a quote from the cited source."""


class Sourced(BaseModel, Generic[V]):
    """One DNA data point: a value with its source, or ``unknown``."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["found", "unknown"] = "unknown"
    value: V | None = None
    source: str | None = Field(default=None, description="URL or 'upload:<file name>' the value came from.")
    method: FieldMethod | None = None
    evidence: str | None = Field(default=None, max_length=400, description="The supporting text, short.")

    @model_validator(mode="after")
    def _consistent(self) -> Sourced[V]:
        if self.status == "found":
            if self.value is None or self.value == [] or self.value == "":
                raise ValueError("a found value must not be empty")
            if not self.source:
                raise ValueError("a found value needs its source URL")
            if self.method is None:
                raise ValueError("a found value needs its method")
        elif self.value is not None or self.source is not None:
            raise ValueError("an unknown value has no value and no source")
        return self

    @property
    def known(self) -> bool:
        return self.status == "found"

    def display(self) -> str:
        if not self.known:
            return UNKNOWN
        if isinstance(self.value, list):
            return ", ".join(str(v) for v in self.value)
        return str(self.value)


def found(value: Any, source: str, method: FieldMethod, evidence: str | None = None) -> dict[str, Any]:
    """A found field as data for ``BrandDNA.model_validate`` (which checks its type)."""
    return {
        "status": "found",
        "value": value,
        "source": source,
        "method": method.value,
        "evidence": evidence[:400] if evidence else None,
    }


Text = Sourced[str]
Items = Sourced[list[str]]
Year = Sourced[int]

DNA_FIELDS: dict[str, str] = {
    # identity
    "name": "str",
    "tagline": "str",
    "description": "str",
    "mission": "str",
    "vision": "str",
    "values": "list",
    "founded_year": "int",
    "headquarters": "str",
    "languages": "list",
    # offer
    "industry": "str",
    "products": "list",
    "services": "list",
    "pricing_tier": "str",
    "unique_selling_points": "list",
    "certifications": "list",
    # market
    "audience_segments": "list",
    "market_position": "str",
    "competitors": "list",
    "testimonials": "list",
    # voice
    "tone_of_voice": "str",
    "personality_traits": "list",
    "keywords": "list",
    "topics": "list",
    "hashtags": "list",
    "calls_to_action": "list",
    "dos": "list",
    "donts": "list",
    # look
    "visual_style": "str",
    "brand_colors": "list",
    "typography": "list",
    "imagery_style": "str",
    "logo_url": "str",
    # channels
    "social_links": "list",
    "contact_email": "str",
    "contact_phone": "str",
    "website": "str",
}
"""Field name → value type ("str", "list" of strings, "int"); the order is the display order."""


class BrandDNA(BaseModel):
    """What a brand is, says and looks like: 36 typed data points, each sourced or unknown."""

    model_config = ConfigDict(extra="forbid")

    brand: str = Field(min_length=1, max_length=200)
    name: Text = Field(default_factory=Text)
    tagline: Text = Field(default_factory=Text)
    description: Text = Field(default_factory=Text)
    mission: Text = Field(default_factory=Text)
    vision: Text = Field(default_factory=Text)
    values: Items = Field(default_factory=Items)
    founded_year: Year = Field(default_factory=Year)
    headquarters: Text = Field(default_factory=Text)
    languages: Items = Field(default_factory=Items)
    industry: Text = Field(default_factory=Text)
    products: Items = Field(default_factory=Items)
    services: Items = Field(default_factory=Items)
    pricing_tier: Text = Field(default_factory=Text)
    unique_selling_points: Items = Field(default_factory=Items)
    certifications: Items = Field(default_factory=Items)
    audience_segments: Items = Field(default_factory=Items)
    market_position: Text = Field(default_factory=Text)
    competitors: Items = Field(default_factory=Items)
    testimonials: Items = Field(default_factory=Items)
    tone_of_voice: Text = Field(default_factory=Text)
    personality_traits: Items = Field(default_factory=Items)
    keywords: Items = Field(default_factory=Items)
    topics: Items = Field(default_factory=Items)
    hashtags: Items = Field(default_factory=Items)
    calls_to_action: Items = Field(default_factory=Items)
    dos: Items = Field(default_factory=Items)
    donts: Items = Field(default_factory=Items)
    visual_style: Text = Field(default_factory=Text)
    brand_colors: Items = Field(default_factory=Items)
    typography: Items = Field(default_factory=Items)
    imagery_style: Text = Field(default_factory=Text)
    logo_url: Text = Field(default_factory=Text)
    social_links: Items = Field(default_factory=Items)
    contact_email: Text = Field(default_factory=Text)
    contact_phone: Text = Field(default_factory=Text)
    website: Text = Field(default_factory=Text)

    sources: list[str] = Field(default_factory=list, description="Every URL or document read.")
    extractor: str = Field(default="heuristic", description="'heuristic', or the model that answered.")
    prompt_version: str | None = None
    usage: dict[str, Any] = Field(
        default_factory=dict, description="Model, tokens, cost and latency of the model call, if any."
    )
    warnings: list[str] = Field(
        default_factory=list, description="Injection attempts seen, model values refused and why."
    )
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def field(self, name: str) -> Sourced[Any]:
        if name not in DNA_FIELDS:
            raise KeyError(name)
        value: Sourced[Any] = getattr(self, name)  # every DNA field is a Sourced
        return value

    def known_fields(self) -> list[str]:
        return [n for n in DNA_FIELDS if self.field(n).known]

    def unknown_fields(self) -> list[str]:
        return [n for n in DNA_FIELDS if not self.field(n).known]

    def items(self, name: str) -> list[str]:
        """A list field's values (or a text field as a one-item list); empty when unknown."""
        value = self.field(name).value
        if value is None:
            return []
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]

    def text(self, name: str, default: str = "") -> str:
        value = self.field(name).value
        if value is None:
            return default
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


# --- personas --------------------------------------------------------------------------------------
class PersonaCandidate(BaseModel):
    """A proposed persona: the ``Persona`` fields plus why it fits the brand."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=120)
    niche: str = Field(min_length=1, max_length=60)
    appearance: str = Field(min_length=10, max_length=600)
    personality_traits: list[str] = Field(min_length=2, max_length=8)
    interests: list[str] = Field(min_length=2, max_length=10)
    tone: str = Field(min_length=1, max_length=200)
    platforms: list[Platform] = Field(min_length=1)
    timezone: str = "UTC"
    age: int | None = Field(default=None, ge=18, le=90, description="Personas are adults.")
    rationale: str = Field(default="", max_length=600, description="Why this persona fits the brand.")

    @field_validator("id", mode="before")
    @classmethod
    def _slug_id(cls, value: object) -> object:
        return slugify(value) if isinstance(value, str) else value

    def to_persona(self) -> Persona:
        """The persona to save (validated, so an unknown timezone fails here with the field named)."""
        return Persona(
            id=self.id,
            name=self.name,
            niche=self.niche,
            appearance=self.appearance,
            personality_traits=self.personality_traits,
            interests=self.interests,
            tone=self.tone,
            timezone=self.timezone,
            platforms=self.platforms,
        )

    @model_validator(mode="after")
    def _valid_persona(self) -> PersonaCandidate:
        self.to_persona()
        return self


class PersonaCandidates(BaseModel):
    """The structured answer for persona proposals: distinct candidates."""

    candidates: list[PersonaCandidate] = Field(min_length=1, max_length=12)

    @model_validator(mode="after")
    def _distinct(self) -> PersonaCandidates:
        names = [c.name.lower() for c in self.candidates]
        ids = [c.id for c in self.candidates]
        if len(set(names)) != len(names) or len(set(ids)) != len(ids):
            raise ValueError("persona candidates must have distinct names and ids")
        return self


# --- topics, posts ---------------------------------------------------------------------------------
class ApprovalStatus(StrEnum):
    proposed = "proposed"
    approved = "approved"
    rejected = "rejected"


class TopicDraft(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str = Field(min_length=5, max_length=200)
    angle: str = Field(min_length=5, max_length=600, description="What the piece argues or shows.")
    pillar: str = Field(min_length=2, max_length=60, description="Content pillar, e.g. education.")
    keywords: list[str] = Field(min_length=1, max_length=10)


class TopicPlan(BaseModel):
    topics: list[TopicDraft] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _distinct(self) -> TopicPlan:
        titles = [t.title.strip().lower() for t in self.topics]
        if len(set(titles)) != len(titles):
            raise ValueError("topic titles must be distinct")
        return self


class Topic(TopicDraft):
    """A monthly topic for one persona."""

    id: str = Field(pattern=ID_PATTERN)
    persona_id: str
    brand_id: str | None = None
    month: str = Field(pattern=MONTH_PATTERN)
    status: ApprovalStatus = ApprovalStatus.proposed
    source: dict[str, Any] = Field(default_factory=dict, description="Provider, model, prompt version, cost.")


WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’\-]*")


def count_words(markdown: str) -> int:
    """Words of prose in Markdown: markup (#, *, |, links' URLs) is not counted."""
    text = re.sub(r"\]\([^)]*\)", "]", markdown)
    return len(WORD_RE.findall(text))


def pages_for(words: int) -> float:
    return round(words / WORDS_PER_PAGE, 2)


class BlogPostDraft(BaseModel):
    """A blog post as a writer returns it; its length must be 4-10 A4 pages (2,000-5,000 words)."""

    model_config = ConfigDict(extra="ignore")

    title: str = Field(min_length=5, max_length=200)
    markdown: str = Field(min_length=100)

    @model_validator(mode="after")
    def _length(self) -> BlogPostDraft:
        words = count_words(self.markdown)
        low, high = BLOG_MIN_PAGES * WORDS_PER_PAGE, BLOG_MAX_PAGES * WORDS_PER_PAGE
        if not low <= words <= high:
            raise ValueError(
                f"markdown has {words} words ({pages_for(words)} pages); it must have {low}-{high} "
                f"words ({BLOG_MIN_PAGES}-{BLOG_MAX_PAGES} A4 pages at {WORDS_PER_PAGE} words each)"
            )
        if len(re.findall(r"^##\s+\S", self.markdown, re.MULTILINE)) < 3:
            raise ValueError("markdown needs at least three '## ' sections")
        return self


class BlogPost(BaseModel):
    id: str = Field(pattern=ID_PATTERN)
    topic_id: str
    persona_id: str
    title: str
    markdown: str
    status: ApprovalStatus = ApprovalStatus.proposed
    source: dict[str, Any] = Field(default_factory=dict)

    @property
    def word_count(self) -> int:
        return count_words(self.markdown)

    @property
    def pages(self) -> float:
        return pages_for(self.word_count)


class SocialPostDraft(BaseModel):
    model_config = ConfigDict(extra="ignore")

    platform: Platform
    text: str = Field(min_length=1, description="The caption without hashtags.")
    hashtags: list[str] = Field(default_factory=list, description="Without '#'.")

    @field_validator("hashtags", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return value.replace(",", " ").split() if isinstance(value, str) else value


class SocialPostDrafts(BaseModel):
    posts: list[SocialPostDraft] = Field(min_length=1)


class SocialPost(SocialPostDraft):
    """A post derived from a blog post, checked against the platform's rules."""

    blog_post_id: str
    persona_id: str
    source: dict[str, Any] = Field(default_factory=dict)

    @property
    def caption(self) -> str:
        tags = " ".join(f"#{t}" for t in self.hashtags)
        return "\n\n".join(part for part in (self.text, tags) if part)
