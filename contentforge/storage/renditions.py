"""Platform renditions: the stored PNG re-encoded to what each platform's API accepts.

The rules are data (``media_rules.yaml``). A rendition is the original center-cropped into the
platform's aspect-ratio range, scaled into its pixel limits, and encoded in an accepted format under
its byte limit (lowering quality, then size, only as far as needed). The original's XMP packet (AI
label ``trainedAlgorithmicMedia`` plus the generation record) goes into every rendition: as XMP in
JPEG and WebP, and as the same iTXt chunks in PNG, so ``read_provenance`` reads any of them.
Renditions are stored next to the original as ``content/{persona}/{piece}.{platform}.{ext}``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from PIL import Image, PngImagePlugin
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contentforge.errors import InvalidInput
from contentforge.images.provenance import RECORD_KEY, XMP_KEY, read_provenance, xmp_from_info
from contentforge.storage.keys import rendition_key
from contentforge.storage.protocol import Storage, StoredObject

DEFAULT_RULES_PATH = Path(__file__).with_name("media_rules.yaml")
ImageFormat = Literal["jpeg", "png", "webp"]

_ENCODINGS: dict[str, tuple[str, str, str]] = {  # format -> (Pillow name, content type, extension)
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "png": ("PNG", "image/png", "png"),
    "webp": ("WEBP", "image/webp", "webp"),
}
MIN_QUALITY = 50
QUALITY_STEP = 10
SHRINK = 0.85


class AspectRange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min: float = Field(gt=0)
    max: float = Field(gt=0)
    preferred: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> AspectRange:
        if self.min > self.max:
            raise ValueError(f"aspect min {self.min} is above max {self.max}")
        return self


class MediaRules(BaseModel):
    """One platform's image rules (see the comments in ``media_rules.yaml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    platform: str
    source: str = ""
    formats: tuple[ImageFormat, ...] = Field(min_length=1)
    aspect: AspectRange
    min_width: int | None = Field(default=None, ge=1)
    max_width: int | None = Field(default=None, ge=1)
    max_long_side: int | None = Field(default=None, ge=1)
    max_short_side: int | None = Field(default=None, ge=1)
    max_pixels: int | None = Field(default=None, ge=1)
    max_bytes: int = Field(ge=1024)
    max_images: int = Field(default=1, ge=1)
    quality: int = Field(default=90, ge=MIN_QUALITY, le=100)


@dataclass(frozen=True)
class Rendition:
    """Encoded bytes for one platform, ready to store or upload."""

    platform: str
    data: bytes
    content_type: str
    ext: str
    format: str
    width: int
    height: int
    quality: int | None


def load_media_rules(path: Path | None = None) -> dict[str, MediaRules]:
    """All platforms' rules from ``media_rules.yaml`` (or ``path``); InvalidInput when malformed."""
    return dict(_load(str(path or DEFAULT_RULES_PATH)))


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[tuple[str, MediaRules], ...]:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read media rules {path}: {exc}") from exc
    if not isinstance(raw, dict) or not raw:
        raise InvalidInput(f"media rules {path} must map platform names to rules")
    rules = []
    for platform, body in raw.items():
        try:
            rules.append((str(platform), MediaRules.model_validate({"platform": platform, **(body or {})})))
        except (TypeError, ValidationError) as exc:
            raise InvalidInput(f"media rules for {platform!r} in {path} are invalid: {exc}") from exc
    return tuple(rules)


def rules_for(platform: str, rules: Mapping[str, MediaRules] | None = None) -> MediaRules:
    table = rules if rules is not None else load_media_rules()
    key = str(getattr(platform, "value", platform))
    if key not in table:
        raise InvalidInput(f"no media rules for platform {key!r} (known: {', '.join(sorted(table))})")
    return table[key]


# -- geometry ------------------------------------------------------------------------------------


def crop_box(width: int, height: int, aspect: AspectRange) -> tuple[int, int, int, int]:
    """The centered box of the largest area whose width/height lies within ``aspect``."""
    ratio = width / height
    if ratio < aspect.min:  # too tall: keep the width, cut height
        new_h = max(1, math.floor(width / aspect.min))
        top = (height - new_h) // 2
        return (0, top, width, top + new_h)
    if ratio > aspect.max:  # too wide: keep the height, cut width
        new_w = max(1, math.floor(height * aspect.max))
        left = (width - new_w) // 2
        return (left, 0, left + new_w, height)
    return (0, 0, width, height)


def target_size(width: int, height: int, rules: MediaRules) -> tuple[int, int]:
    """Scale ``width x height`` (aspect kept) into the platform's pixel limits, up to ``min_width``."""
    scale = 1.0
    if rules.max_width:
        scale = min(scale, rules.max_width / width)
    if rules.max_long_side:
        scale = min(scale, rules.max_long_side / max(width, height))
    if rules.max_short_side:
        scale = min(scale, rules.max_short_side / min(width, height))
    if rules.max_pixels:
        scale = min(scale, math.sqrt(rules.max_pixels / (width * height)))
    if scale == 1.0 and rules.min_width and width < rules.min_width:
        scale = rules.min_width / width
    if scale == 1.0:
        return width, height
    if scale < 1.0:
        # Floor both sides so no limit is exceeded; the caller crops the rounding drift (a pixel or
        # so) back into the aspect range, which only removes pixels.
        return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    # Growing to the minimum width: pick the height nearest the ratio that stays inside the range.
    new_w = math.ceil(width * scale)
    lowest, highest = math.ceil(new_w / rules.aspect.max), math.floor(new_w / rules.aspect.min)
    return new_w, max(1, min(max(round(new_w * height / width), lowest), highest))


# -- rendering -----------------------------------------------------------------------------------


def render_for_platform(
    png: bytes,
    platform: str,
    *,
    fmt: str | None = None,
    rules: Mapping[str, MediaRules] | None = None,
    require_provenance: bool = True,
) -> Rendition:
    """Crop, scale and encode ``png`` for ``platform``; the original's provenance travels along.

    ``fmt`` picks one of the platform's accepted formats (default: its first). Raises InvalidInput
    for an unknown platform or format, an unreadable image, a source without the AI label (unless
    ``require_provenance=False``), or when no quality and size fits the byte limit.
    """
    rule = rules_for(platform, rules)
    chosen = fmt or rule.formats[0]
    if chosen == "jpg":
        chosen = "jpeg"
    if chosen not in rule.formats:
        raise InvalidInput(
            f"{rule.platform} does not accept {chosen!r} images (accepted: {', '.join(rule.formats)})"
        )
    try:
        with Image.open(io.BytesIO(png)) as opened:
            opened.load()
            info = dict(opened.info)
            source = opened.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"cannot read the source image: {exc}") from exc
    xmp = xmp_from_info(info)
    if require_provenance and read_provenance(png).digital_source_type is None:
        raise InvalidInput("the source image carries no AI provenance label (XMP DigitalSourceType)")

    image = _to_mode(source, chosen)
    image = image.crop(crop_box(image.width, image.height, rule.aspect))
    size = target_size(image.width, image.height, rule)
    if size != image.size:
        image = _fit(image.resize(size, Image.Resampling.LANCZOS), rule.aspect)
    return _encode_within_limit(image, rule, chosen, xmp, info)


def _fit(image: Image.Image, aspect: AspectRange) -> Image.Image:
    """Crop away the rounding drift of a resize that left the aspect range (a pixel at most)."""
    box = crop_box(image.width, image.height, aspect)
    return image if box == (0, 0, image.width, image.height) else image.crop(box)


def _to_mode(image: Image.Image, fmt: str) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
    if fmt == "jpeg" or not has_alpha:
        if has_alpha:  # JPEG has no alpha: flatten onto white rather than black
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return image.convert("RGB") if image.mode != "RGB" else image
    return image.convert("RGBA")


def _encode_within_limit(
    image: Image.Image,
    rule: MediaRules,
    fmt: str,
    xmp: str | None,
    info: Mapping[str | tuple[int, int], object],
) -> Rendition:
    pillow_name, content_type, ext = _ENCODINGS[fmt]
    lossy = fmt in ("jpeg", "webp")
    current = image
    while True:
        qualities = range(rule.quality, MIN_QUALITY - 1, -QUALITY_STEP) if lossy else [None]
        for quality in qualities:
            data = _encode(current, pillow_name, quality, xmp, info)
            if len(data) <= rule.max_bytes:
                return Rendition(
                    rule.platform, data, content_type, ext, fmt, current.width, current.height, quality
                )
        smaller = (math.floor(current.width * SHRINK), math.floor(current.height * SHRINK))
        if min(smaller) < 16 or (rule.min_width and smaller[0] < rule.min_width):
            raise InvalidInput(
                f"cannot encode a {fmt} for {rule.platform} under {rule.max_bytes} bytes "
                f"without going below its minimum size"
            )
        current = _fit(image.resize(smaller, Image.Resampling.LANCZOS), rule.aspect)


def _encode(
    image: Image.Image,
    pillow_name: str,
    quality: int | None,
    xmp: str | None,
    info: Mapping[str | tuple[int, int], object],
) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {}
    icc = info.get("icc_profile")
    if icc:
        options["icc_profile"] = icc
    if pillow_name == "PNG":
        chunks = PngImagePlugin.PngInfo()
        if xmp:
            chunks.add_itxt(XMP_KEY, xmp, zip=False)
        record = info.get(RECORD_KEY)
        if record:
            chunks.add_itxt(RECORD_KEY, str(record), zip=True)
        options["pnginfo"] = chunks
        options["optimize"] = True
    else:
        options["quality"] = quality
        if xmp:
            options["xmp"] = xmp.encode("utf-8")
        if pillow_name == "JPEG":
            options.update(optimize=True, progressive=True)
        else:
            options["method"] = 4
    image.save(buffer, format=pillow_name, **options)
    return buffer.getvalue()


# -- storing -------------------------------------------------------------------------------------


def store_renditions(
    storage: Storage,
    persona_id: str,
    piece_id: str,
    png: bytes,
    platforms: Iterable[str],
    *,
    metadata: Mapping[str, str] | None = None,
    rules: Mapping[str, MediaRules] | None = None,
) -> dict[str, StoredObject]:
    """Render and store ``png`` for each platform next to the original; idempotent like ``put``."""
    renditions = [render_for_platform(png, str(getattr(p, "value", p)), rules=rules) for p in platforms]
    stored: dict[str, StoredObject] = {}
    for rendition in renditions:
        key = rendition_key(persona_id, piece_id, rendition.platform, rendition.ext)
        meta = {**(metadata or {}), "platform": rendition.platform, "rendition-of": piece_id}
        stored[rendition.platform] = storage.put(key, rendition.data, rendition.content_type, metadata=meta)
    return stored
