"""Uploaded documents (``.txt``, ``.md``, ``.html``, ``.pdf``) as research sources.

Every document is read as data and cited as ``upload:<file name>``; a PDF's text comes from
``contentforge.research.pdf`` (page and size limits; encrypted or image-only PDFs are refused with
what to do instead).
"""

from __future__ import annotations

from pathlib import Path

from contentforge.errors import InvalidInput
from contentforge.research.html_text import PageContent, parse_document
from contentforge.research.pdf import pdf_supported, pdf_text

DOCUMENT_KINDS = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}
MAX_DOCUMENT_BYTES = 10_000_000


def document_source(path: Path) -> str:
    """How a document is cited as a source: ``upload:<file name>``."""
    return f"upload:{path.name}"


def load_document(path: Path, max_bytes: int = MAX_DOCUMENT_BYTES) -> PageContent:
    """Read one uploaded file; unknown types, missing or oversized files are an ``InvalidInput``."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        if not pdf_supported():
            raise InvalidInput(
                f"{path}: PDF documents need the pure-python package pypdf (pip install pypdf)"
            )
    elif suffix not in DOCUMENT_KINDS:
        raise InvalidInput(
            f"{path}: unsupported document type {suffix or '(none)'!r}; use .txt, .md, .html or .pdf"
        )
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InvalidInput(f"{path}: {size} bytes, documents may have at most {max_bytes}")
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read document ({exc.strerror})") from exc
    source = document_source(path)
    if suffix == ".pdf":
        return parse_document(pdf_text(data, str(path)), "text", source)
    return parse_document(data.decode("utf-8", "replace"), DOCUMENT_KINDS[suffix], source)
