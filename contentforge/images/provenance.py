"""Label generated images as AI-made, inside the PNG itself.

Platforms and the EU AI Act expect synthetic media to say so in machine-readable form. Each PNG gets
an XMP packet (the ``XML:com.adobe.xmp`` iTXt chunk that Photoshop, exiftool and browsers read) with
IPTC's ``DigitalSourceType = trainedAlgorithmicMedia``, plus the full generation record as JSON, both
inside the XMP and in a dedicated ``contentforge:generation`` chunk, so any image can be regenerated.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, PngImagePlugin
from pydantic import ValidationError

from contentforge.domain import GenerationRecord

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
XMP_KEY = "XML:com.adobe.xmp"
RECORD_KEY = "contentforge:generation"

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "contentforge": "https://github.com/contentforge/contentforge/ns/1.0/",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)


@dataclass(frozen=True)
class Provenance:
    """What an image file says about its origin; ``None`` where the file says nothing."""

    digital_source_type: str | None
    record: GenerationRecord | None


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def build_xmp(record: GenerationRecord) -> str:
    """An XMP packet declaring the image AI-generated and carrying the record as JSON."""
    meta = ET.Element(_q("x", "xmpmeta"))
    rdf = ET.SubElement(meta, _q("rdf", "RDF"))
    desc = ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})
    ET.SubElement(desc, _q("Iptc4xmpExt", "DigitalSourceType")).text = DIGITAL_SOURCE_TYPE
    ET.SubElement(desc, _q("xmp", "CreatorTool")).text = f"ContentForge ({record.backend})"
    ET.SubElement(desc, _q("contentforge", "generation")).text = record.model_dump_json()
    body = ET.tostring(meta, encoding="unicode")
    return f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n{body}\n<?xpacket end="w"?>'


def png_with_provenance(image: Image.Image, record: GenerationRecord) -> bytes:
    """Encode ``image`` as PNG bytes carrying the XMP label and the generation record."""
    info = PngImagePlugin.PngInfo()
    # XMP must be an uncompressed iTXt chunk for readers that follow the XMP spec strictly.
    info.add_itxt(XMP_KEY, build_xmp(record), zip=False)
    info.add_itxt(RECORD_KEY, record.model_dump_json(), zip=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_provenance(data: bytes | Path) -> Provenance:
    """Read the AI label and generation record back from PNG, JPEG or WebP bytes or a file.

    PNG keeps XMP in an iTXt chunk; JPEG (APP1) and WebP (XMP chunk) expose it as ``info["xmp"]``,
    which is where platform renditions (``contentforge.storage.renditions``) carry the same packet.
    """
    raw = data.read_bytes() if isinstance(data, Path) else data
    with Image.open(io.BytesIO(raw)) as image:
        info = dict(image.info)
    source_type, xmp_record = _parse_xmp(xmp_from_info(info))
    record = _parse_record(info.get(RECORD_KEY)) or xmp_record
    return Provenance(digital_source_type=source_type, record=record)


def xmp_from_info(info: dict) -> str | None:
    """The raw XMP packet of an opened image (PNG iTXt, or JPEG/WebP ``xmp``), decoded; None if absent."""
    xmp = info.get(XMP_KEY) or info.get("xmp")
    if not xmp:
        return None
    return xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)


def _parse_xmp(xmp: str | bytes | None) -> tuple[str | None, GenerationRecord | None]:
    """Find DigitalSourceType (element or attribute form, as XMP allows both) and our record."""
    if not xmp:
        return None, None
    text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else xmp
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        return None, None  # XMP never needs a DTD; refusing one avoids entity-expansion tricks.
    start = text.find("<x:xmpmeta")
    end = text.rfind("</x:xmpmeta>")
    if start < 0 or end < 0:
        return None, None
    try:
        root = ET.fromstring(text[start : end + len("</x:xmpmeta>")])
    except ET.ParseError:
        return None, None
    source_type: str | None = None
    record: GenerationRecord | None = None
    for desc in root.iter(_q("rdf", "Description")):
        attr = desc.get(_q("Iptc4xmpExt", "DigitalSourceType"))
        element = desc.find("Iptc4xmpExt:DigitalSourceType", NS)
        if source_type is None:
            source_type = attr or (element.text.strip() if element is not None and element.text else None)
        generation = desc.find("contentforge:generation", NS)
        if record is None and generation is not None:
            record = _parse_record(generation.text)
    return source_type, record


def _parse_record(text: str | bytes | None) -> GenerationRecord | None:
    if not text:
        return None
    try:
        return GenerationRecord.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        return None


# --- Any format: PNG, JPEG, WebP (added for `contentforge verify`) --------------------------------


@dataclass(frozen=True)
class ImageProvenance:
    """What a PNG, JPEG or WebP file says about its origin; ``None`` where it says nothing."""

    format: str
    digital_source_type: str | None
    record: GenerationRecord | None
    c2pa_manifest: str | None = None
    """The active C2PA manifest's label, when c2pa-python is installed and the file carries one."""


def read_image_provenance(data: bytes | Path) -> ImageProvenance:
    """Read the AI label and generation record from PNG, JPEG or WebP bytes or a file.

    ``read_provenance`` does the reading; this adds the format, a clear error for anything else and
    the C2PA manifest label when c2pa-python is installed.
    """
    from contentforge.errors import InvalidInput

    raw = data.read_bytes() if isinstance(data, Path) else data
    try:
        with Image.open(io.BytesIO(raw)) as image:
            fmt = str(image.format or "unknown")
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"not a readable image: {exc}") from exc
    if fmt not in {"PNG", "JPEG", "WEBP", "MPO"}:
        raise InvalidInput(f"provenance is read from PNG, JPEG and WebP files, not {fmt}")
    found = read_provenance(raw)
    return ImageProvenance(fmt, found.digital_source_type, found.record, _c2pa_label(raw, fmt))


def _c2pa_label(raw: bytes, fmt: str) -> str | None:
    """The active manifest label if c2pa-python is installed and the file has a manifest."""
    try:
        import c2pa  # optional dependency
    except ImportError:
        return None
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "WEBP": "image/webp"}[fmt]
    try:
        with c2pa.Reader(mime, io.BytesIO(raw)) as reader:
            manifest_store = json.loads(reader.json())
    except Exception:  # no manifest, or one c2pa cannot parse: simply none to report
        return None
    label = manifest_store.get("active_manifest")
    return str(label) if label else None


def sign_c2pa(
    data: bytes, mime: str, cert_path: Path, key_path: Path, *, title: str = "ContentForge image"
) -> bytes:
    """``data`` with a signed C2PA manifest (action ``c2pa.created``, source ``trainedAlgorithmicMedia``).

    Optional: needs ``pip install c2pa-python`` and a PEM certificate chain (signer first, then its
    CA) plus its EC P-256 private key (``CONTENTFORGE_C2PA_CERT_PATH`` / ``_KEY_PATH``). Signing is
    offline (no timestamp authority); readers report a self-made CA as untrusted but the manifest valid.
    """
    from contentforge.errors import InvalidInput

    try:
        import c2pa
    except ImportError as exc:
        raise InvalidInput("C2PA signing needs the optional package: pip install c2pa-python") from exc
    try:
        chain, key = Path(cert_path).read_bytes(), Path(key_path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"C2PA certificate or key unreadable: {exc.strerror} ({exc.filename})") from exc
    manifest = {
        "claim_generator_info": [{"name": "ContentForge"}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE}]},
            }
        ],
    }
    out = io.BytesIO()
    try:
        signer = c2pa.Signer.from_info(
            c2pa.C2paSignerInfo(alg=b"es256", sign_cert=chain, private_key=key, ta_url=None)
        )
        with c2pa.Builder(manifest) as builder:
            builder.sign(signer, mime, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise InvalidInput(f"C2PA signing failed: {exc}") from exc
    return out.getvalue()
