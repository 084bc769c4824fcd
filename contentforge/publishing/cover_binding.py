"""Which image a publication posts: the piece's own, or the cover chosen among its seed variations.

``analytics.cover`` records per piece and platform a chosen cover (``piece_feedback``, key
``cover:<platform>``), which may be the image of one of the piece's variations (pieces whose
``parent_piece_id`` is the piece). The choice is bound once, when the publication is scheduled:
``bind_image`` writes into the row's ``detail["media"]`` which image it will post (the image's
piece, storage key, content sha256 and the verdict binding it was judged under) and why. Everything
later reads that record, never the cover record again, so a cover re-chosen after scheduling changes
no publication already scheduled or half-published, and a retry or rerun sends the same bytes.

A variation's image is used only when it may be published on the platform exactly as the piece's
own image may (``PublicationLedger.refusal``: ready, a verdict the platform accepts, bound to its
current content). Otherwise the piece's own image is bound and the record says why the cover was
not used. A variation that is already scheduled as a post of its own on the platform is not used as
a cover either (the same image would go out twice), and ``bound_as_cover`` refuses to schedule a
variation whose image a publication of its parent already posts there.

``image_refusal`` repeats the check right before the platform call, for the bound image: a cover
piece rejected, changed or moderated again after scheduling fails the publication (as the piece's
own image would), instead of posting other bytes than those bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contentforge.db.models import PieceORM, PublicationORM, utcnow
from contentforge.db.models_analytics import PieceFeedbackORM

MEDIA_KEY = "media"
"""The key of the bound image's record in ``publications.detail``."""

Refusal = Callable[[PieceORM | None, str, Session], str | None]
"""``PublicationLedger.refusal``: why a piece may not go to a platform now (``None``: it may)."""


def _image_record(piece: PieceORM, *, source: str, why: str) -> dict[str, Any]:
    return {
        "piece_id": piece.id,
        "storage_key": piece.storage_key,
        "url": piece.url,
        "content_sha256": piece.content_sha256,
        "moderated_hash": piece.moderated_hash,
        "verdict": piece.verdict,
        "source": source,
        "why": why,
        "bound_at": utcnow().isoformat(),
    }


def chosen_cover(session: Session, piece_id: str, platform: str) -> dict[str, Any] | None:
    """The cover record ``analytics.cover.record_covers`` kept for the piece on ``platform``."""
    feedback = session.get(PieceFeedbackORM, piece_id)
    record = (feedback.decisions or {}).get(f"cover:{platform}") if feedback is not None else None
    return record if isinstance(record, dict) and record.get("chosen") else None


def bind_image(session: Session, piece: PieceORM, platform: str, refusal: Refusal) -> dict[str, Any]:
    """The image record a new publication of ``piece`` on ``platform`` keeps (see the module text)."""
    cover = chosen_cover(session, piece.id, platform)
    if cover is None:
        return _image_record(piece, source="own", why=f"no cover was chosen for {platform}")
    chosen = str(cover["chosen"])
    if chosen == piece.id:
        return _image_record(piece, source="own", why=f"the cover chosen for {platform} is its own image")
    candidate = session.get(PieceORM, chosen)
    reason = _cover_refusal(session, piece, candidate, platform, refusal)
    if reason is not None:
        record = _image_record(
            piece, source="own", why=f"the cover chosen for {platform} (piece {chosen}) is not used: {reason}"
        )
        record["declined_cover"] = chosen
        return record
    assert candidate is not None
    method = cover.get("method") or "analytics covers"
    return _image_record(
        candidate,
        source="cover",
        why=f"the cover chosen for {platform} among the piece and its variations ({method})",
    )


def _cover_refusal(
    session: Session, piece: PieceORM, candidate: PieceORM | None, platform: str, refusal: Refusal
) -> str | None:
    if candidate is None:
        return "no such piece any more"
    if candidate.parent_piece_id != piece.id or candidate.persona_id != piece.persona_id:
        return "it is not a variation of this piece"
    reason = refusal(candidate, platform, session)
    if reason is not None:
        return reason
    own = session.scalars(
        select(PublicationORM.id).where(
            PublicationORM.piece_id == candidate.id,
            PublicationORM.platform == platform,
            PublicationORM.status != "failed",
        )
    ).first()
    if own is not None:
        return (
            f"it is scheduled as a post of its own on {platform} (publication {own}); an image goes out once"
        )
    return None


def bound_as_cover(session: Session, piece: PieceORM, platform: str) -> str | None:
    """Why the variation ``piece`` may not be scheduled on ``platform``: its parent's publication
    there posts its image as the cover; ``None`` when no publication does."""
    if piece.parent_piece_id is None:
        return None
    parent = session.scalars(
        select(PublicationORM).where(
            PublicationORM.piece_id == piece.parent_piece_id,
            PublicationORM.platform == platform,
            PublicationORM.status != "failed",
        )
    ).first()
    if parent is None or (parent.detail or {}).get(MEDIA_KEY, {}).get("piece_id") != piece.id:
        return None
    return (
        f"its image is the cover of piece {piece.parent_piece_id}'s publication {parent.id} on {platform}; "
        "an image goes out once"
    )


def image_refusal(session: Session, row: PublicationORM, piece: PieceORM, refusal: Refusal) -> str | None:
    """Why the image bound to ``row`` must not be posted now; ``None`` when it may (or none is bound:
    a row scheduled before images were bound posts the piece's own, checked with the piece)."""
    media = (row.detail or {}).get(MEDIA_KEY)
    if not media:
        return None
    if media.get("piece_id") == piece.id:
        if media.get("content_sha256") != piece.content_sha256:
            return "the piece's image differs from the one bound when it was scheduled; moderate again"
        return None
    cover = session.get(PieceORM, media.get("piece_id"))
    reason = refusal(cover, row.platform, session)
    if reason is not None:
        return f"its cover image (piece {media.get('piece_id')}): {reason}"
    assert cover is not None
    if cover.content_sha256 != media.get("content_sha256") or cover.moderated_hash != media.get(
        "moderated_hash"
    ):
        return (
            f"its cover image (piece {cover.id}) was changed or judged again after this publication "
            "was scheduled, and only the bytes bound then are posted; moderate it again"
        )
    return None


def bound_image(detail: dict[str, Any] | None) -> dict[str, Any] | None:
    """The image record bound to a publication (``None``: scheduled before images were bound)."""
    media = (detail or {}).get(MEDIA_KEY)
    return media if isinstance(media, dict) and media.get("piece_id") else None


def cover_note(detail: dict[str, Any] | None) -> str | None:
    """One line about a chosen cover on a publication (posted, or not used and why); ``None`` when
    no cover other than the piece's own image was chosen."""
    image = bound_image(detail)
    if image is None or (image.get("source") != "cover" and not image.get("declined_cover")):
        return None
    if image.get("source") == "cover":
        return f"posts the image of variation {image['piece_id']}: {image.get('why')}"
    return f"posts its own image: {image.get('why')}"
