"""A verdict is bound to exactly what it judged: the image bytes and every text that may be published.

Moderation stores ``judged_hash(image_sha256, texts)`` on the piece (``pieces.moderated_hash``)
together with the verdict. Whatever later reads the verdict to decide something (scheduling,
claiming a publication, approving a review) recomputes the hash from the piece's *current* image
and texts and trusts the verdict only when the two are equal. So a caption rewritten by a resumed
batch, a hook edited by hand or an image replaced in storage can never ride on an older verdict:
the piece goes back to moderation instead.

The texts are the image prompt plus each hook's full caption (``Hook.caption``: text, call to
action and hashtags, exactly as a publication carries it). A publication's caption must be one of
the judged captions, with at most ContentForge's own AI-disclosure label added.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

from contentforge.domain.models import Hook

HASH_VERSION = 1
"""Part of the hashed payload, so a future change of what is bound never matches an old hash."""


def judged_texts(prompt: str, hooks: Iterable[Hook]) -> list[str]:
    """The texts a moderation pass judges for a piece: the prompt, then every hook's caption."""
    return [prompt, *(hook.caption for hook in hooks)]


def judged_hash(image_sha256: str | None, texts: Sequence[str]) -> str:
    """The hash of one moderation input; the order of the texts does not matter, their bytes do."""
    payload = json.dumps(
        {"v": HASH_VERSION, "image": image_sha256, "texts": sorted(texts)},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def image_sha256(data: bytes) -> str:
    """The sha256 of the image bytes as moderation read them from storage."""
    return hashlib.sha256(data).hexdigest()
