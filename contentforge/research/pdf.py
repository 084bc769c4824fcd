"""Text from PDF documents (uploaded brand books, fetched PDFs) with the pure-python pypdf.

A PDF is read only within limits and otherwise refused with what to do about it, because the
alternative is worse: a password-protected file or a scan without a text layer would silently give
an empty document, and a 900-page catalogue would spend minutes extracting text nobody reads.

- more than ``MAX_PDF_PAGES`` pages: refused before any text is extracted;
- encrypted: opened with the empty password (owner-password-only PDFs are readable), else refused;
- no text layer (scanned pages are images): refused, since there is nothing to read without OCR;
- extraction stops after ``MAX_PDF_TEXT_CHARS`` characters (far more than a prompt ever takes).

The text is then a document like any other: data, never instructions, cited by its source name.
Bullet characters at line starts become ``-`` items, so lists read as lists.
"""

from __future__ import annotations

import io
import logging
import re

from contentforge.errors import InvalidInput

log = logging.getLogger(__name__)

MAX_PDF_PAGES = 200
MAX_PDF_TEXT_CHARS = 400_000
_BULLET = re.compile(r"^[ \t]*[•●▪◦‣∙·][ \t]*", re.MULTILINE)


class PdfUnreadable(InvalidInput):
    """A PDF research cannot read (encrypted, no text layer, too long, broken); the message says why."""


def pdf_supported() -> bool:
    """Whether pypdf is importable (it is a declared dependency; this guards a trimmed install)."""
    try:
        import pypdf  # noqa: F401
    except ImportError:
        return False
    return True


def pdf_text(data: bytes, source: str, *, max_pages: int = MAX_PDF_PAGES) -> str:
    """The text of the PDF ``data`` (``source`` names it in errors), or ``PdfUnreadable``."""
    try:
        import pypdf
        from pypdf.errors import DependencyError, PdfReadError
    except ImportError:
        raise PdfUnreadable(f"{source}: PDF documents need the pure-python package pypdf") from None
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == pypdf.PasswordType.NOT_DECRYPTED:
            raise PdfUnreadable(
                f"{source}: the PDF is password-protected; upload a copy without a password "
                "(or paste its text into a .txt or .md document)"
            )
        pages = len(reader.pages)
    except PdfUnreadable:
        raise
    except DependencyError as exc:
        raise PdfUnreadable(f"{source}: the PDF's encryption needs a package pypdf lacks: {exc}") from None
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise PdfUnreadable(f"{source}: not a readable PDF ({type(exc).__name__}: {exc})") from None
    if pages > max_pages:
        raise PdfUnreadable(
            f"{source}: {pages} pages; research reads PDFs of at most {max_pages} pages: "
            "upload the pages about the brand (mission, values, products, voice)"
        )
    parts: list[str] = []
    size = 0
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:  # pypdf raises many types for one damaged page; keep the others
            log.warning("%s: page %d skipped, its text cannot be extracted: %s", source, number, exc)
            continue
        parts.append(text)
        size += len(text)
        if size >= MAX_PDF_TEXT_CHARS:
            log.info("%s: text cut after page %d of %d (%d characters)", source, number, pages, size)
            break
    text = "\n\n".join(parts)[:MAX_PDF_TEXT_CHARS]
    if not text.strip():
        raise PdfUnreadable(
            f"{source}: the PDF has no text layer (its {pages} page(s) are images, e.g. a scan); "
            "run OCR on it or upload the text as a .txt or .md document"
        )
    return _BULLET.sub("- ", text)
