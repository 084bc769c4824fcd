"""Provenance for images a user uploads (``POST /content/upload-batch``), in the same XMP form as ours.

A generated image says ``trainedAlgorithmicMedia`` and carries its generation record; an upload has
no generation record, and ContentForge did not make it, so it is labelled by what the uploader
states: not AI-generated (IPTC ``digitalCapture``) unless they say it is (``trainedAlgorithmicMedia``).
The packet also says who uploaded it, when, and the file's original SHA-256, so the stored PNG (the
decoded pixels re-encoded losslessly, which is where the label can live) traces back to the bytes
the uploader sent. ``provenance.read_provenance`` and ``contentforge verify`` read it like ours.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass

from PIL import Image, PngImagePlugin

from contentforge.images.provenance import DIGITAL_SOURCE_TYPE, NS, XMP_KEY

IPTC_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
DIGITAL_CAPTURE = IPTC_SOURCE_TYPES + "digitalCapture"
UPLOAD_KEY = "contentforge:upload"


@dataclass(frozen=True)
class UploadRecord:
    """What is known about an uploaded image: who sent it, its original bytes, what they stated."""

    uploaded_by: str
    uploaded_at: str
    original_sha256: str
    original_format: str
    original_filename: str
    ai_generated: bool

    @property
    def digital_source_type(self) -> str:
        return DIGITAL_SOURCE_TYPE if self.ai_generated else DIGITAL_CAPTURE


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def upload_xmp(record: UploadRecord) -> str:
    """An XMP packet with the stated ``DigitalSourceType`` and the upload record as JSON."""
    meta = ET.Element(_q("x", "xmpmeta"))
    rdf = ET.SubElement(meta, _q("rdf", "RDF"))
    desc = ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})
    ET.SubElement(desc, _q("Iptc4xmpExt", "DigitalSourceType")).text = record.digital_source_type
    ET.SubElement(desc, _q("contentforge", "upload")).text = json.dumps(asdict(record), sort_keys=True)
    body = ET.tostring(meta, encoding="unicode")
    return f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n{body}\n<?xpacket end="w"?>'


def png_with_upload_provenance(image: Image.Image, record: UploadRecord) -> bytes:
    """``image`` as PNG bytes carrying the upload's XMP label and record."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(XMP_KEY, upload_xmp(record), zip=False)  # uncompressed, as strict XMP readers want
    info.add_itxt(UPLOAD_KEY, json.dumps(asdict(record), sort_keys=True), zip=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()
