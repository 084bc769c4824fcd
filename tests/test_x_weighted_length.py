"""X's weighted length against twitter-text's published conformance cases, and grapheme-safe cutting.

The cases and their expected ``weightedLength`` are those of twitter-text's ``conformance/validate.yml``
(https://github.com/twitter/twitter-text), sections ``WeightedTweetsWithDiscountedEmojiCounterTest``
(config v3: emoji sequences weigh 2) and ``UnicodeDirectionalMarkerCounterTest``, plus the two
normalisation cases of ``WeightedTweetsCounterTest`` that contain no emoji (v2 and v3 agree on them).
Long texts are written as expressions that build the published text character for character.
"""

from __future__ import annotations

import pytest

from contentforge.text.platform_rules import (
    count_emoji,
    graphemes,
    rules_for,
    strip_emoji,
    trim_text,
    weighted_length,
)

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 👨‍👩‍👧‍👦, 7 code points
POEM = (  # 160 CJK characters
    "故人西辞黄鹤楼，烟花三月下扬州。孤帆远影碧空尽，唯见长江天际流。朱雀桥边野草花，乌衣巷口夕阳斜。"
    "旧时王谢堂前燕，飞入寻常百姓家。朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"
    "泪湿罗巾梦不成，夜深前殿按歌声。红颜未老恩先断，斜倚薰笼坐到明。独在异乡为异客，每逢佳节倍思亲。"
    "遥知兄弟登高处，遍插茱萸少一人。"
)
KANA = "あいうえおかきくけこ"
LONG_LABEL_URL = "https://" + "somesuperlongurl" * 249 + ".com/foo"  # host labels past 63 bytes
PUNCTUATION = (
    "This is a tweet with general punctuation characters: "
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u200b"
    " \u2010 \u2011 \u2012 \u2013 \u2014 \u2015 \u2016  \u2017 \u2018 \u2019 \u201a \u201b \u201c \u201d"
    " \u201e \u201f \u2032 \u2033 \u2034 \u2035 \u2036 \u2037"
)

CONFORMANCE: list[tuple[str, str, int]] = [
    ("Regular Tweet with url", "Hi http://test.co", 26),
    ("Just url", "http://test.co", 23),
    ("Long tweet, overflow at char index 280", "285 chars-" + "xxxxxxxxxx-" * 25, 285),
    (
        "Long tweet with url in the middle, overflow at char index 284",
        "285 chars- http://www.twitter.com/jack " + "xxxxxxxxxx-" * 24,
        299,
    ),
    (
        "Long tweet with url at the end, overflow at char index 265",
        "xxxxxxxxxx-" * 24 + " http://www.twitter.com/jack ",
        289,
    ),
    ("10 url string, no overflow", "https://www.twitter.com/aloha " * 10, 240),
    ("160 CJK char, overflow at char index 140", POEM, 320),
    ("160 emoji char, overflow at char index 140", "\U0001f637" * 160, 320),
    ("3 latin char + 160 CJK char, overflow at char index 141", "the" + POEM, 323),
    (
        "282 chars with a normalized character within valid range but outside 280",
        "282 chars-" + "xxxxxxxxxx-" * 24 + "xxxxxA\u0301x",
        281,
    ),
    (
        "Count a mix of single byte single word, and double word unicode characters",
        "H\U0001f431\u263a" + FAMILY,
        7,
    ),
    (
        "Count unicode emoji chars inside the basic multilingual plane",
        "\U0001f637\U0001f47e\U0001f621\U0001f525\U0001f4a9",
        10,
    ),
    (
        "Count unicode emoji chars outside the basic multilingual plane with skin tone modifiers",
        "\U0001f64b\U0001f3fd\U0001f468\u200d\U0001f3a4",  # 🙋🏽👨‍🎤
        4,
    ),
    ("Handle General Punctuation Characters with visible spaces(u2000-200A), no ZWJ/ZWNJ", PUNCTUATION, 110),
    (
        "Handle long url with invalid domain labels and short url",
        "Long url with invalid domain labels and a short url: "
        + " ".join([LONG_LABEL_URL] * 3)
        + " https://validurl.com",
        12079,
    ),
    ("Handle a 64 character domain without protocol", "randomurl" * 7 + "s.com", 68),
    (
        "Do not allow > 140 CJK characters by virtue of CJK chars greater than 63 punycode encoded chars "
        "in the host",
        KANA * 12 + " http://" + KANA * 5 + "あいう.com",
        358,
    ),
    (
        "Allow > 140 CJK characters by virtue of CJK chars less than 63 punycode encoded chars in the host",
        KANA * 12 + " http://" + KANA * 5 + "あい.com",
        264,
    ),
    ("140 family emoji", FAMILY * 140, 280),
    ("Emoji with a leading character in the latin range is counted as 2", "1\u20e3", 2),
    (
        "Unicode 10.0 emoji",
        "Unicode 10.0 emoji: \U0001f92a; \U0001f9d5; \U0001f9d5\U0001f3fe; "
        "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",  # 🏴󠁧󠁢󠁥󠁮󠁧󠁿 (tags)
        34,
    ),
    ("Unicode 9.0 emoji", "Unicode 9.0 emoji: \U0001f920; \U0001f483; \U0001f483\U0001f3fe", 29),
    ("Handle invalid characters", "ABC\u202a\uffffABC\ufffe", 12),
    (
        "Tweet text containing directional characters should be considered valid",
        "\u2066\u202ahttp://foobar.\u067e\u0627\u06a9\u0633\u062a\u0627\u0646/\u202c\u2069",
        31,
    ),
    ("'Á' is normalized into 1 char", "A\u0301B", 2),
    ("שּׁ is normalized into 3 chars", "A\ufb2c", 4),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CONFORMANCE], ids=[c[0] for c in CONFORMANCE])
def test_weighted_length_matches_twitter_text_conformance(text: str, expected: int) -> None:
    assert weighted_length(text) == expected


def test_the_conformance_set_covers_what_captions_contain() -> None:
    texts = " ".join(text for _, text, _ in CONFORMANCE)
    assert len(CONFORMANCE) >= 15
    for needle in ["\u200d", "\U0001f3fd", "\U000e007f", "\u20e3", "http://", "故", "あ", "A\u0301"]:
        assert needle in texts, needle


# --- emoji from the Unicode data, not hand-kept ranges --------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("🇩🇪🇯🇵", 2),  # two flags, never three
        ("☝🏽 ✌️ ❤️", 3),  # text-default pictographs presented as emoji (skin tone, VS16)
        ("❤\u200d🔥", 1),  # a ZWJ sequence even without VS16 on its first part
        ("#️⃣ 1⃣", 2),  # keycaps with and without VS16
        ("🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", 1),  # Scotland, a tag sequence
        ("🫠 🪿", 2),  # Unicode 14 and 15 emoji, past the old hand-kept ranges' knowledge
        ("★ → ▪ ♪ ✓ © ™ ❤", 0),  # symbols and text-presentation characters are not emoji
    ],
)
def test_emoji_come_from_the_unicode_emoji_properties(text: str, expected: int) -> None:
    assert count_emoji(text) == expected
    assert count_emoji(strip_emoji(text)) == 0


def test_a_flag_or_family_weighs_2_and_text_presentation_weighs_as_characters() -> None:
    assert weighted_length("🇩🇪") == weighted_length(FAMILY) == weighted_length("❤️") == 2
    assert weighted_length("©") == 1 and weighted_length("©\ufe0f") == 2


# --- cutting never splits a grapheme cluster --------------------------------------------------------
CLUSTERS = [
    FAMILY,
    "🇯🇵",
    "👍🏽",
    "1️⃣",
    "❤️\u200d🔥",
    "e\u0301",
    "\u1100\u1161\u11a8",  # 각 as conjoining jamo
    "क्षि",  # Devanagari conjunct with a vowel sign
    "🏴\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f",
    "a",
]


def test_graphemes_are_what_a_reader_sees() -> None:
    assert graphemes("".join(CLUSTERS)) == CLUSTERS


@pytest.mark.parametrize("platform", ["x", "instagram"])
def test_cutting_at_any_limit_never_splits_a_cluster(platform: str) -> None:
    measure = rules_for(platform).measure
    word = "".join(CLUSTERS * 3)  # one long "word": the cut falls back to clusters
    for limit in range(0, measure(word) + 2):
        cut = trim_text(word, limit, measure)
        assert measure(cut) <= limit
        kept = cut.removesuffix("…")
        assert word.startswith(kept)
        assert graphemes(kept) == graphemes(word)[: len(graphemes(kept))], (limit, cut)
