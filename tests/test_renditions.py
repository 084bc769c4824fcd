"""Platform renditions: aspect clamping, pixel and byte limits, formats, provenance that survives."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from contentforge.domain import GenerationRecord, Platform
from contentforge.errors import InvalidInput
from contentforge.images.provenance import DIGITAL_SOURCE_TYPE, png_with_provenance, read_provenance
from contentforge.storage import LocalStorage, rendition_key
from contentforge.storage.renditions import (
    AspectRange,
    MediaRules,
    crop_box,
    load_media_rules,
    render_for_platform,
    store_renditions,
    target_size,
)

RECORD = GenerationRecord(
    backend="tiny-sdxl",
    model="tiny-sdxl-random:seed=0",
    prompt='ünïcode prompt with <xml> & "quotes"',
    negative_prompt="blurry",
    seed=2**40 + 7,
    steps=4,
    guidance_scale=5.0,
    width=128,
    height=384,
)


def labelled_png(width: int, height: int, *, noise: bool = False, mode: str = "RGB") -> bytes:
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        # Red grows left to right, green top to bottom, so crops are visible in the pixels.
        vertical = Image.linear_gradient("L")
        horizontal = vertical.rotate(90)
        image = Image.merge(
            "RGB",
            (
                horizontal.resize((width, height)),
                vertical.resize((width, height)),
                Image.new("L", (width, height), 128),
            ),
        )
    return png_with_provenance(image.convert(mode), RECORD)


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_rules_cover_every_platform_and_match_the_documented_limits() -> None:
    rules = load_media_rules()
    assert set(rules) == {p.value for p in Platform}
    insta = rules["instagram"]
    assert insta.formats == ("jpeg",) and (insta.aspect.min, insta.aspect.max) == (0.8, 1.91)
    assert (insta.min_width, insta.max_width, insta.max_bytes) == (320, 1440, 8_000_000)
    assert rules["tiktok"].formats == ("jpeg", "webp") and rules["tiktok"].aspect.preferred == 0.5625
    assert rules["x"].max_bytes == 5_000_000 and rules["x"].max_images == 4
    assert "png" in rules["threads"].formats and rules["linkedin"].max_pixels == 36_152_320


def test_malformed_rules_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("x:\n  formats: [bmp]\n  aspect: {min: 1, max: 2}\n  max_bytes: 5000\n")
    with pytest.raises(InvalidInput, match="media rules for 'x'"):
        load_media_rules(path)


@pytest.mark.parametrize(
    ("size", "aspect", "expected"),
    [
        ((100, 100), (0.8, 1.91), (0, 0, 100, 100)),  # 1:1 stays
        ((100, 300), (0.8, 1.91), (0, 87, 100, 212)),  # 1:3 -> 4:5, centered
        ((400, 100), (0.8, 1.91), (104, 0, 295, 100)),  # 4:1 -> 1.91:1, centered
    ],
)
def test_crop_box_centers_into_the_aspect_range(
    size: tuple[int, int], aspect: tuple[float, float], expected: tuple[int, int, int, int]
) -> None:
    box = crop_box(*size, AspectRange(min=aspect[0], max=aspect[1]))
    assert box == expected
    width, height = box[2] - box[0], box[3] - box[1]
    assert aspect[0] <= width / height <= aspect[1]


def test_square_stays_square_and_is_scaled_up_to_instagrams_minimum_width() -> None:
    rendition = render_for_platform(labelled_png(128, 128), "instagram")
    image = opened(rendition.data)
    assert (rendition.format, rendition.content_type, rendition.ext) == ("jpeg", "image/jpeg", "jpg")
    assert image.format == "JPEG" and image.size == (320, 320) == (rendition.width, rendition.height)


def test_a_tall_image_is_cropped_to_four_by_five_for_instagram() -> None:
    rendition = render_for_platform(labelled_png(128, 384), Platform.instagram)
    image = opened(rendition.data)
    assert image.width == 320
    assert image.width / image.height == pytest.approx(0.8, abs=0.005)
    # The crop is centered: the middle of the gradient (green channel ~128) is in the middle row.
    assert abs(image.getpixel((160, image.height // 2))[1] - 128) < 12
    assert image.getpixel((160, 0))[1] > 60  # the top third was cut away


def test_large_images_shrink_within_each_platforms_pixel_limits() -> None:
    wide = labelled_png(3000, 1500)
    insta = opened(render_for_platform(wide, "instagram").data)
    assert insta.width <= 1440 and 0.8 <= insta.width / insta.height <= 1.91
    assert insta.width >= 1438  # at most the rounding pixel is cropped
    tiktok = opened(render_for_platform(wide, "tiktok").data)
    assert max(tiktok.size) <= 1920 and min(tiktok.size) <= 1080
    assert tiktok.width / tiktok.height <= 1.7778 + 1e-3


def test_target_size_honours_every_limit() -> None:
    rules = MediaRules(
        platform="t",
        formats=("png",),
        aspect=AspectRange(min=0.1, max=10),
        max_pixels=10_000,
        max_bytes=10_000,
    )
    width, height = target_size(400, 200, rules)
    assert width * height <= 10_000 and width / height == pytest.approx(2.0, rel=0.02)
    assert target_size(50, 50, rules) == (50, 50)


def test_formats_are_the_platforms_and_others_are_refused() -> None:
    png = labelled_png(200, 300)
    webp = render_for_platform(png, "tiktok", fmt="webp")
    assert webp.content_type == "image/webp" and opened(webp.data).format == "WEBP"
    x_png = render_for_platform(png, "x", fmt="png")
    assert x_png.ext == "png" and opened(x_png.data).format == "PNG"
    with pytest.raises(InvalidInput, match="instagram does not accept 'png'"):
        render_for_platform(png, "instagram", fmt="png")
    with pytest.raises(InvalidInput, match="no media rules for platform 'myspace'"):
        render_for_platform(png, "myspace")


@pytest.mark.parametrize(("platform", "fmt"), [("instagram", "jpeg"), ("tiktok", "webp"), ("threads", "png")])
def test_provenance_survives_in_every_format(platform: str, fmt: str) -> None:
    rendition = render_for_platform(labelled_png(128, 384), platform, fmt=fmt)
    provenance = read_provenance(rendition.data)
    assert provenance.digital_source_type == DIGITAL_SOURCE_TYPE
    assert provenance.record == RECORD


def test_an_unlabelled_source_is_refused_unless_allowed() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="PNG")
    with pytest.raises(InvalidInput, match="no AI provenance label"):
        render_for_platform(buffer.getvalue(), "x")
    rendition = render_for_platform(buffer.getvalue(), "x", require_provenance=False)
    assert read_provenance(rendition.data).digital_source_type is None


def test_alpha_is_flattened_for_jpeg_and_kept_for_webp() -> None:
    image = Image.new("RGBA", (64, 64), (200, 10, 10, 255))
    image.paste((0, 0, 0, 0), (0, 0, 32, 64))  # left half transparent
    png = png_with_provenance(image, RECORD)
    jpeg = opened(render_for_platform(png, "x", fmt="jpeg").data)
    assert jpeg.getpixel((5, 5)) == pytest.approx((255, 255, 255), abs=3)  # flattened onto white
    assert opened(render_for_platform(png, "x", fmt="jpeg").data).mode == "RGB"
    assert opened(render_for_platform(png, "x", fmt="webp").data).mode == "RGBA"


def test_byte_limit_lowers_quality_then_size() -> None:
    noisy = labelled_png(600, 600, noise=True)
    roomy = MediaRules(
        platform="x", formats=("jpeg",), aspect=AspectRange(min=0.25, max=4), max_bytes=10_000_000
    )
    tight = roomy.model_copy(update={"max_bytes": 60_000})
    full = render_for_platform(noisy, "x", rules={"x": roomy})
    small = render_for_platform(noisy, "x", rules={"x": tight})
    assert len(full.data) > 60_000 and full.quality == 90 and full.width == 600
    assert len(small.data) <= 60_000
    assert small.quality == 50 and small.width < 600  # quality went down first, then the size
    assert read_provenance(small.data).digital_source_type == DIGITAL_SOURCE_TYPE


def test_byte_limit_that_cannot_be_met_is_a_clear_error() -> None:
    rules = MediaRules(
        platform="x", formats=("png",), aspect=AspectRange(min=0.25, max=4), min_width=500, max_bytes=1024
    )
    with pytest.raises(InvalidInput, match="under 1024 bytes"):
        render_for_platform(labelled_png(600, 600, noise=True), "x", rules={"x": rules})


def test_renditions_are_stored_next_to_the_original(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    png = labelled_png(128, 384)
    stored = store_renditions(storage, "mia", "b1-000", png, ["instagram", Platform.tiktok, "x"])
    assert {platform: obj.key for platform, obj in stored.items()} == {
        "instagram": "content/mia/b1-000.instagram.jpg",
        "tiktok": "content/mia/b1-000.tiktok.jpg",
        "x": "content/mia/b1-000.x.jpg",
    }
    assert all(obj.written for obj in stored.values())
    tiktok = opened(storage.get("content/mia/b1-000.tiktok.jpg"))
    assert tiktok.width / tiktok.height == pytest.approx(0.5625, abs=0.01)
    again = store_renditions(storage, "mia", "b1-000", png, ["instagram"])
    assert not again["instagram"].written  # deterministic encoding: a rerun writes nothing
    with pytest.raises(InvalidInput):
        rendition_key("mia", "b1-000", "../x", "jpg")


@pytest.mark.parametrize("platform", [p.value for p in Platform])
@pytest.mark.parametrize("size", [(64, 640), (640, 64), (1000, 333), (333, 1000), (1600, 1700)])
def test_every_rendition_satisfies_every_rule(platform: str, size: tuple[int, int]) -> None:
    rule = load_media_rules()[platform]
    source = labelled_png(*size)
    for fmt in rule.formats:
        rendition = render_for_platform(source, platform, fmt=fmt)
        image = opened(rendition.data)
        width, height = image.size
        assert (width, height) == (rendition.width, rendition.height)
        assert rule.aspect.min <= width / height <= rule.aspect.max
        assert len(rendition.data) <= rule.max_bytes
        assert rule.max_width is None or width <= rule.max_width
        assert rule.min_width is None or width >= rule.min_width
        assert rule.max_long_side is None or max(width, height) <= rule.max_long_side
        assert rule.max_short_side is None or min(width, height) <= rule.max_short_side
        assert rule.max_pixels is None or width * height <= rule.max_pixels
        assert read_provenance(rendition.data).record == RECORD
