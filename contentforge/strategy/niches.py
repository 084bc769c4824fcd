"""The niche catalog: data that offline persona, topic and post generation draw from.

Each niche has keywords (to match a brand's DNA), and pools of interests, looks, traits, tones,
platforms, time zones and content angles. The niches are those the template library serves, so a
persona generated here finds templates when a batch is produced for it.

Over 500 lines on purpose: it is one table of data, read whole; split by niche it would scatter the
catalog that ``match_niche`` ranks as one.
"""

from __future__ import annotations

from dataclasses import dataclass

from contentforge.domain.models import Platform


@dataclass(frozen=True)
class Niche:
    name: str
    keywords: tuple[str, ...]
    interests: tuple[str, ...]
    looks: tuple[str, ...]
    """Styling phrases for the appearance line."""
    traits: tuple[str, ...]
    tones: tuple[str, ...]
    platforms: tuple[Platform, ...]
    angles: tuple[str, ...]
    """Topic angles with ``{kw}`` for a keyword."""


IG, TT, X, TH, LI = Platform.instagram, Platform.tiktok, Platform.x, Platform.threads, Platform.linkedin

NICHES: dict[str, Niche] = {
    n.name: n
    for n in (
        Niche(
            "fitness",
            (
                "fitness",
                "workout",
                "training",
                "gym",
                "run",
                "running",
                "strength",
                "athlete",
                "sport",
                "yoga",
                "protein",
                "cardio",
                "activewear",
                "marathon",
                "exercise",
                "pilates",
            ),
            (
                "strength training",
                "trail running",
                "mobility work",
                "meal prep",
                "marathon training",
                "kettlebells",
                "recovery routines",
                "home workouts",
                "cycling",
                "pilates",
            ),
            (
                "athletic build, wears technical running gear",
                "muscular build, wears a fitted training tank",
                "lean runner's build, wears a bright windbreaker",
                "strong frame, wears neutral gym basics",
            ),
            ("disciplined", "upbeat", "competitive", "encouraging", "data-driven", "resilient"),
            (
                "motivating and direct",
                "calm coach-like",
                "high-energy and playful",
                "no-nonsense and practical",
            ),
            (IG, TT, X),
            (
                "a 4-week plan for {kw}",
                "common {kw} mistakes and fixes",
                "what a real {kw} week looks like",
                "the gear that matters for {kw}",
                "{kw} for busy schedules",
                "recovery after {kw}",
            ),
        ),
        Niche(
            "wellness",
            (
                "wellness",
                "wellbeing",
                "mindful",
                "mindfulness",
                "sleep",
                "stress",
                "meditation",
                "health",
                "self-care",
                "balance",
                "skin",
                "natural",
                "organic",
                "calm",
            ),
            (
                "meditation",
                "sleep hygiene",
                "herbal teas",
                "journaling",
                "breathwork",
                "slow mornings",
                "gentle yoga",
                "digital detox",
            ),
            (
                "soft natural look, wears linen loungewear",
                "serene expression, wears a knit cardigan",
                "fresh-faced, wears organic cotton basics",
            ),
            ("calm", "empathetic", "thoughtful", "grounded", "curious", "gentle"),
            ("warm and reassuring", "gentle and reflective", "honest and evidence-minded"),
            (IG, TH, TT),
            (
                "a calmer routine with {kw}",
                "myths about {kw}",
                "small daily habits for {kw}",
                "how {kw} changed my week",
                "a beginner's guide to {kw}",
            ),
        ),
        Niche(
            "fashion",
            (
                "fashion",
                "style",
                "outfit",
                "wear",
                "clothing",
                "apparel",
                "collection",
                "designer",
                "denim",
                "dress",
                "shoes",
                "sneakers",
                "accessories",
                "wardrobe",
                "sustainable fashion",
            ),
            (
                "capsule wardrobes",
                "thrifting",
                "street style",
                "tailoring",
                "sneaker culture",
                "sustainable fabrics",
                "colour theory",
                "vintage finds",
            ),
            (
                "sharp style, wears an oversized blazer",
                "eclectic look, wears layered vintage pieces",
                "minimalist style, wears monochrome tailoring",
                "streetwear look, wears a bold bomber jacket",
            ),
            ("confident", "creative", "witty", "trend-aware", "opinionated", "playful"),
            ("playful and confident", "polished and editorial", "chatty and candid"),
            (IG, TT, TH),
            (
                "five ways to style {kw}",
                "a {kw} capsule for the season",
                "{kw}: worth it or not",
                "how to care for {kw}",
                "the story behind {kw}",
            ),
        ),
        Niche(
            "beauty",
            (
                "beauty",
                "skincare",
                "makeup",
                "cosmetics",
                "serum",
                "glow",
                "hair",
                "fragrance",
                "nails",
                "spf",
                "cruelty-free",
                "vegan beauty",
            ),
            (
                "skincare routines",
                "ingredient research",
                "natural makeup",
                "haircare",
                "fragrance layering",
                "nail art",
            ),
            (
                "glowing skin, wears a silk scrunchie and a white tee",
                "bold makeup look, wears a satin top",
                "natural look, wears a soft pastel sweater",
            ),
            ("meticulous", "friendly", "honest", "creative", "detail-oriented"),
            ("friendly and honest", "expert and precise", "bubbly and encouraging"),
            (IG, TT),
            (
                "my {kw} routine, step by step",
                "{kw} ingredients decoded",
                "{kw} on a budget",
                "testing {kw} for a month",
                "the {kw} mistakes I made",
            ),
        ),
        Niche(
            "travel",
            (
                "travel",
                "trip",
                "destination",
                "hotel",
                "journey",
                "adventure",
                "explore",
                "tour",
                "flight",
                "beach",
                "island",
                "city break",
                "luggage",
                "backpack",
            ),
            (
                "slow travel",
                "city breaks",
                "island hopping",
                "travel photography",
                "packing light",
                "local food markets",
                "train journeys",
            ),
            (
                "sun-kissed look, wears a linen shirt and sunglasses",
                "adventurous look, wears a utility jacket",
                "relaxed look, wears a straw hat and sundress",
            ),
            ("adventurous", "curious", "spontaneous", "observant", "easy-going"),
            ("storytelling and warm", "wry and observant", "excited and inviting"),
            (IG, TT, X),
            (
                "48 hours with {kw}",
                "packing list for {kw}",
                "{kw} off the beaten path",
                "what nobody tells you about {kw}",
                "{kw} on a budget",
            ),
        ),
        Niche(
            "food",
            (
                "food",
                "recipe",
                "cooking",
                "kitchen",
                "restaurant",
                "coffee",
                "bakery",
                "bread",
                "chef",
                "meal",
                "snack",
                "vegan",
                "plant-based",
                "tea",
                "organic food",
                "nutrition",
            ),
            (
                "sourdough baking",
                "plant-based cooking",
                "coffee brewing",
                "seasonal produce",
                "street food",
                "fermentation",
                "meal planning",
            ),
            (
                "warm smile, wears a canvas apron",
                "casual look, wears a rolled-sleeve denim shirt",
                "cheerful look, wears a striped breton top",
            ),
            ("generous", "playful", "patient", "curious", "sensory"),
            ("cozy and inviting", "enthusiastic and practical", "witty and down-to-earth"),
            (IG, TT, TH),
            (
                "an easy weeknight {kw}",
                "{kw} from scratch",
                "the science of {kw}",
                "five {kw} ideas for the week",
                "{kw} mistakes to avoid",
            ),
        ),
        Niche(
            "tech",
            (
                "tech",
                "technology",
                "software",
                "app",
                "ai",
                "cloud",
                "data",
                "developer",
                "platform",
                "api",
                "device",
                "gadget",
                "startup",
                "saas",
                "security",
                "automation",
                "sensor",
                "hardware",
            ),
            (
                "productivity tools",
                "open source",
                "AI assistants",
                "home automation",
                "coding",
                "gadget reviews",
                "cybersecurity",
            ),
            (
                "smart-casual look, wears a grey hoodie and glasses",
                "modern look, wears a black crewneck",
                "relaxed look, wears a flannel shirt over a tee",
            ),
            ("analytical", "curious", "pragmatic", "witty", "patient explainer"),
            ("clear and pragmatic", "nerdy and enthusiastic", "dry-humoured and precise"),
            (X, LI, TH),
            (
                "{kw} explained in five minutes",
                "what {kw} means for small teams",
                "my {kw} setup",
                "{kw}: hype vs reality",
                "getting started with {kw}",
            ),
        ),
        Niche(
            "business",
            (
                "business",
                "b2b",
                "enterprise",
                "consulting",
                "finance",
                "marketing",
                "sales",
                "leadership",
                "team",
                "growth",
                "strategy",
                "customers",
                "partners",
            ),
            (
                "leadership",
                "remote teams",
                "negotiation",
                "personal finance",
                "public speaking",
                "entrepreneurship",
            ),
            (
                "professional look, wears a navy blazer",
                "polished look, wears a crisp white shirt",
                "approachable look, wears a knit polo",
            ),
            ("strategic", "ambitious", "articulate", "reliable", "mentoring"),
            ("professional and insightful", "straightforward and mentoring", "optimistic and concise"),
            (LI, X),
            (
                "lessons learned from {kw}",
                "a framework for {kw}",
                "{kw} metrics that matter",
                "how teams get {kw} wrong",
                "the future of {kw}",
            ),
        ),
        Niche(
            "outdoors",
            (
                "outdoor",
                "outdoors",
                "hiking",
                "camping",
                "mountain",
                "trail",
                "climbing",
                "nature",
                "surf",
                "kayak",
                "ski",
                "forest",
                "bike",
            ),
            ("hiking", "wild camping", "bouldering", "trail photography", "foraging", "surfing"),
            (
                "weathered outdoorsy look, wears a fleece and beanie",
                "sporty look, wears a shell jacket",
                "rugged look, wears hiking boots and cargo pants",
            ),
            ("adventurous", "resourceful", "calm under pressure", "eco-conscious", "humble"),
            ("grounded and inspiring", "humorous and practical", "quietly poetic"),
            (IG, TT, X),
            (
                "a first-timer's guide to {kw}",
                "{kw} safety basics",
                "leave-no-trace {kw}",
                "the best season for {kw}",
                "{kw} gear I trust",
            ),
        ),
        Niche(
            "lifestyle",
            (
                "lifestyle",
                "home",
                "living",
                "family",
                "everyday",
                "design",
                "interior",
                "community",
                "gift",
                "sustainable",
                "local",
                "handmade",
            ),
            ("home styling", "weekend rituals", "city life", "DIY projects", "plants", "reading"),
            (
                "relaxed look, wears a cream sweater",
                "cheerful look, wears a denim jacket",
                "effortless look, wears a striped shirt",
            ),
            ("warm", "sociable", "optimistic", "creative", "authentic"),
            ("warm and conversational", "light and funny", "thoughtful and candid"),
            (IG, TH, TT),
            (
                "a slow Sunday with {kw}",
                "small upgrades: {kw}",
                "{kw} for real life",
                "what I learned from {kw}",
                "a month of {kw}",
            ),
        ),
    )
}

TIMEZONES_BY_LANG: dict[str, tuple[str, ...]] = {
    "en": ("America/New_York", "Europe/London", "America/Los_Angeles", "Australia/Sydney", "America/Chicago"),
    "de": ("Europe/Berlin", "Europe/Vienna", "Europe/Zurich"),
    "fr": ("Europe/Paris", "America/Montreal", "Europe/Brussels"),
    "es": ("Europe/Madrid", "America/Mexico_City", "America/Bogota"),
    "it": ("Europe/Rome",),
    "nl": ("Europe/Amsterdam",),
    "pt": ("Europe/Lisbon", "America/Sao_Paulo"),
    "ja": ("Asia/Tokyo",),
}
DEFAULT_TIMEZONES = ("Europe/London", "America/New_York", "Europe/Berlin", "Asia/Singapore", "America/Denver")

FIRST_NAMES = (
    "Mia", "Leo", "Ava", "Noah", "Zoe", "Kai", "Lena", "Omar", "Nora", "Ravi", "Ines", "Theo", "Yara",
    "Jonas", "Priya", "Mateo", "Elif", "Sami", "Hana", "Felix", "Amara", "Luca", "Iris", "Diego",
)  # fmt: skip
SURNAME_HINTS = (
    "Rivers", "Stone", "Vale", "North", "Bloom", "Hart", "Reed", "Cole", "Lane", "Frost", "Sage", "Wren",
)  # fmt: skip
AGES = (23, 26, 29, 31, 34, 37, 41, 45)
HAIR = (
    "short curly black hair", "long straight auburn hair", "shoulder-length blonde hair", "shaved head",
    "wavy brown hair in a low bun", "cropped silver-grey hair", "braided dark hair", "tousled red hair",
)  # fmt: skip
EYES = ("brown eyes", "green eyes", "hazel eyes", "blue eyes", "grey eyes", "dark eyes")


def niche_scores(words: list[str]) -> dict[str, int]:
    """How many of ``words`` (lower-case, may be phrases) hit each niche's keywords."""
    text = " " + " ".join(w.lower() for w in words) + " "
    scores: dict[str, int] = {}
    for niche in NICHES.values():
        scores[niche.name] = sum(text.count(f" {kw} ") + text.count(f" {kw}s ") for kw in niche.keywords)
    return scores


def niche_for_hint(hint: str) -> Niche:
    """The niche a type hint names ('fitness', 'tech', 'fashion'...), or the best keyword match."""
    key = hint.strip().lower()
    if key in NICHES:
        return NICHES[key]
    scores = niche_scores(key.replace("-", " ").split())
    best = max(scores, key=lambda n: scores[n])
    if scores[best] == 0:
        from contentforge.errors import InvalidInput

        raise InvalidInput(f"unknown persona type {hint!r}; known types: {', '.join(NICHES)}")
    return NICHES[best]
