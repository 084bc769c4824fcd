"""Pieces: their plan, generated image, hooks, moderation verdict and failure, one row each.

A verdict is bound to what it judged: ``moderated_hash`` is ``content_hash_of`` the piece (image
bytes, prompt and every hook caption) when the verdict was applied. Anything that changes those
(new hooks, another image) sends the piece back to ``generated`` to be moderated again, and a verdict
on content that changed while it was being judged is kept in the history only
(``domain.binding``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from contentforge.db.costs import charge
from contentforge.db.models import HookORM, ModerationVerdictORM, PieceORM, utcnow
from contentforge.db.rows import PieceRow, PlannedPiece
from contentforge.db.sessions import Store, insert_for, load_batch, load_piece, require_aware
from contentforge.domain.binding import judged_hash, judged_texts
from contentforge.domain.models import (
    GenerationRecord,
    Hook,
    HookStyle,
    ModerationVerdict,
    PieceStatus,
    Platform,
    Verdict,
)
from contentforge.errors import InvalidInput
from contentforge.redaction import redact, redact_text

MAX_ERROR_CHARS = 10_000
"""Errors are for people; a multi-megabyte traceback would only bloat the table."""
MAX_FALLBACK_CHARS = 300
PROMPT_SOURCES = ("llm", "rules")


class PieceRepository(Store):
    def add_planned_pieces(self, batch_id: str, pieces: Sequence[PlannedPiece]) -> None:
        """Insert the planned pieces; a (batch, index) already present is left exactly as it is."""
        if not pieces:
            return
        now = utcnow()
        with self._db.write() as session:
            persona_id = load_batch(session, batch_id).persona_id
            stmt = insert_for(session, PieceORM).values(
                [
                    {
                        "id": p.piece_id,
                        "batch_id": batch_id,
                        "persona_id": persona_id,
                        "index": p.index,
                        "template_id": p.template_id,
                        "template_tier": p.template_tier,
                        "status": PieceStatus.planned.value,
                        "prompt": p.prompt,
                        "negative_prompt": p.negative_prompt,
                        "seed": p.seed,
                        "prompt_quality_gate": p.prompt_quality_gate,
                        "parent_piece_id": p.parent_piece_id,
                        "steps": p.steps,
                        "guidance_scale": p.guidance_scale,
                        "width": p.width,
                        "height": p.height,
                        "loras": None if p.loras is None else [dict(lora) for lora in p.loras],
                        "scheduler": p.scheduler,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for p in pieces
                ]
            )
            try:
                # Only the (batch, index) conflict is expected; a piece id clash still raises.
                session.execute(stmt.on_conflict_do_nothing(index_elements=["batch_id", "index"]))
            except IntegrityError as exc:
                raise InvalidInput(
                    f"a planned piece id of batch {batch_id!r} is already used elsewhere"
                ) from exc

    def get_piece(self, piece_id: str) -> PieceRow | None:
        with self._db.read() as session:
            piece = session.get(PieceORM, piece_id, options=[selectinload(PieceORM.hooks)])
            return None if piece is None else to_row(piece)

    def pieces(
        self,
        *,
        batch_id: str | None = None,
        persona_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[PieceRow]:
        """Pieces matching every given filter, oldest first and in plan order within a batch."""
        query = select(PieceORM).options(selectinload(PieceORM.hooks))
        if batch_id is not None:
            query = query.where(PieceORM.batch_id == batch_id)
        if persona_id is not None:
            query = query.where(PieceORM.persona_id == persona_id)
        if status is not None:
            query = query.where(PieceORM.status == str(status))
        query = query.order_by(PieceORM.created_at, PieceORM.batch_id, PieceORM.index).limit(limit)
        with self._db.read() as session:
            return [to_row(piece) for piece in session.scalars(query)]

    def set_planned_request(
        self,
        piece_id: str,
        *,
        prompt: str,
        negative_prompt: str,
        steps: int,
        guidance_scale: float,
        width: int,
        height: int,
        loras: Sequence[Mapping[str, object]],
        scheduler: str | None,
    ) -> bool:
        """Write a request's exact values into a still-planned piece (``contentforge.piece_requests``).

        The generation columns of a planned piece are otherwise NULL; once set, the piece is generated
        with exactly them. False (nothing written) once the piece has left ``planned``.
        """
        with self._db.write() as session:
            piece = load_piece(session, piece_id, for_update=True)
            if piece.status != PieceStatus.planned.value or piece.generation_record is not None:
                return False
            piece.prompt = prompt
            piece.negative_prompt = negative_prompt
            piece.steps = steps
            piece.guidance_scale = guidance_scale
            piece.width = width
            piece.height = height
            piece.loras = [dict(lora) for lora in loras]
            piece.scheduler = scheduler
            return True

    def variations_of(self, piece_id: str) -> list[PieceRow]:
        """The pieces derived from ``piece_id`` (``contentforge variations``), oldest first."""
        query = (
            select(PieceORM)
            .options(selectinload(PieceORM.hooks))
            .where(PieceORM.parent_piece_id == piece_id)
            .order_by(PieceORM.created_at, PieceORM.batch_id, PieceORM.index)
        )
        with self._db.read() as session:
            return [to_row(piece) for piece in session.scalars(query)]

    def mark_generated(
        self,
        piece_id: str,
        *,
        record: GenerationRecord,
        storage_key: str,
        url: str,
        content_sha256: str,
        queued_at: datetime,
        started_at: datetime,
        finished_at: datetime,
        generation_seconds: float,
        cost_usd: float,
        generation_id: str | None = None,
    ) -> None:
        """Store the image's record and location, and the charge of the generation that made it.

        The charge is keyed (``cost_entries.charge_key``) by ``generation_id`` when given (each real
        generation is one charge, recorded by ``charge_generation`` before the image is stored, so a
        crash after generating never loses it), else by the record's fingerprint; recording the same
        generation again never adds a second charge. If it produced the very same bytes and the piece
        was already moderated, the verdict still holds and is kept; otherwise the piece goes back to
        'generated' and must be moderated again.
        """
        for name, value in (
            ("queued_at", queued_at),
            ("started_at", started_at),
            ("finished_at", finished_at),
        ):
            require_aware(name, value)
        with self._db.write() as session:
            piece = load_piece(session, piece_id, for_update=True)
            keep_verdict = piece.verdict is not None and piece.content_sha256 == content_sha256
            fingerprint = record.fingerprint()
            piece.prompt = record.prompt
            piece.negative_prompt = record.negative_prompt
            piece.seed = record.seed
            piece.model = record.model
            piece.backend = record.backend
            piece.loras = [lora.model_dump(mode="json") for lora in record.loras]
            piece.steps = record.steps
            piece.guidance_scale = record.guidance_scale
            piece.width = record.width
            piece.height = record.height
            piece.scheduler = record.scheduler
            piece.generation_record = redact(record.model_dump(mode="json"))
            piece.generation_fingerprint = fingerprint
            piece.storage_key = storage_key
            piece.url = url
            piece.content_sha256 = content_sha256
            piece.queued_at, piece.started_at, piece.finished_at = queued_at, started_at, finished_at
            piece.generation_seconds = generation_seconds
            piece.cost_usd = cost_usd
            piece.error = None
            if not keep_verdict:
                piece.status = PieceStatus.generated.value
                clear_verdict(piece)
            key = f"image:{piece_id}:{generation_id or fingerprint}"
            charge(
                session,
                key,
                update_amount=generation_id is None,
                batch_id=piece.batch_id,
                piece_id=piece_id,
                kind="image",
                provider=record.backend,
                amount_usd=cost_usd,
                detail={"model": record.model, "fingerprint": fingerprint},
            )

    def hook_platforms(self, piece_id: str) -> set[str]:
        """The platforms the piece has hooks for (a resumed batch leaves those hooks alone)."""
        with self._db.read() as session:
            return set(session.scalars(select(HookORM.platform).where(HookORM.piece_id == piece_id)))

    def save_hooks(self, piece_id: str, hooks: Sequence[Hook]) -> bool:
        """Replace the piece's hooks for each platform present in ``hooks``; others stay.

        Hooks are published text, so a piece whose moderated texts change goes back to ``generated``
        (its verdict no longer covers what would be published) and is moderated again; saving the
        very same hooks changes nothing. Returns whether the piece lost its verdict.
        """
        if not hooks:
            return False
        platforms = sorted({hook.platform.value for hook in hooks})
        with self._db.write() as session:
            piece = load_piece(session, piece_id, for_update=True)
            session.refresh(piece, attribute_names=["hooks"])
            before = content_hash_of(piece)
            session.execute(
                delete(HookORM).where(HookORM.piece_id == piece_id, HookORM.platform.in_(platforms))
            )
            positions: dict[str, int] = {}
            for hook in hooks:
                position = positions.get(hook.platform.value, 0)
                positions[hook.platform.value] = position + 1
                session.add(
                    HookORM(
                        piece_id=piece_id,
                        position=position,
                        style=hook.style.value,
                        platform=hook.platform.value,
                        text=hook.text,
                        call_to_action=hook.call_to_action,
                        hashtags=list(hook.hashtags),
                        quality_gate=hook.quality_gate,
                    )
                )
            session.flush()
            session.refresh(piece, attribute_names=["hooks"])
            if piece.moderated_hash is not None and content_hash_of(piece) != before:
                piece.status = PieceStatus.generated.value
                clear_verdict(piece)
                return True
            return False

    def content_hash(self, piece_id: str) -> str:
        """The hash of the piece's current image and texts (``domain.binding``)."""
        with self._db.read() as session:
            return content_hash_of(load_piece(session, piece_id))

    def save_verdict(
        self,
        piece_id: str,
        verdict: ModerationVerdict,
        *,
        judged: str | None = None,
        review_reasons: Sequence[str] = (),
    ) -> bool:
        """Keep the verdict's history row and apply it: 'ready', or 'rejected' with its reasons.

        Rejected pieces stay in the database so a reviewer can see what was refused and why. ``tier``
        is the publishing tier, so it is empty for a rejected piece. ``review_reasons`` (a borderline or
        disputed verdict) put a not-rejected piece in ``needs_review`` in the same transaction, so it
        is never ``ready`` even for a moment.

        ``judged`` is ``domain.binding.judged_hash`` of what the moderator actually saw. When the
        piece changed while it was being judged (its current hash differs), the verdict is kept in the
        history only and the piece stays ``generated`` for another pass; returns False then. Without
        ``judged`` the verdict is bound to the piece's current content (for callers that judged the
        stored piece in this very state, such as tests).
        """
        with self._db.write() as session:
            piece = load_piece(session, piece_id, for_update=True)
            # A held piece is judged again only when its verdict is not bound to it (moderate_piece).
            moderated = (
                PieceStatus.generated,
                PieceStatus.ready,
                PieceStatus.rejected,
                PieceStatus.needs_review,
            )
            if piece.status not in moderated:
                raise InvalidInput(
                    f"piece {piece_id!r} is {piece.status!r}; only a generated image is moderated"
                )
            current = content_hash_of(piece)
            scores = {name: float(score) for name, score in verdict.scores.items()}
            session.add(
                ModerationVerdictORM(
                    piece_id=piece_id,
                    verdict=verdict.verdict.value,
                    scores=scores,
                    reasons=list(verdict.reasons),
                    backends=list(verdict.backends),
                )
            )
            if judged is not None and judged != current:
                piece.status = PieceStatus.generated.value
                clear_verdict(piece)
                return False
            piece.moderated_hash = current
            rejected = verdict.verdict == Verdict.rejected
            piece.verdict = verdict.verdict.value
            piece.tier = None if rejected else verdict.verdict.value
            piece.moderation_scores = scores
            piece.moderation_reasons = list(verdict.reasons)
            piece.status = (PieceStatus.rejected if rejected else PieceStatus.ready).value
            if review_reasons and not rejected:
                piece.status = PieceStatus.needs_review.value
                held = [f"needs review: {reason}" for reason in review_reasons]
                piece.moderation_reasons = held + list(verdict.reasons)
            return True

    def mark_failed(self, piece_id: str, error: str) -> bool:
        """Record why a piece's generation failed; its plan stays so the batch report can show the gap.

        Only a piece still ``planned`` fails: one whose image was already recorded (say, the first of an
        image group whose later piece then failed) keeps its image and status. Returns whether it failed.
        """
        with self._db.write() as session:
            piece = load_piece(session, piece_id, for_update=True)
            if piece.status not in (PieceStatus.planned.value, PieceStatus.failed.value):
                return False
            piece.status = PieceStatus.failed.value
            piece.error = redact_text(error)[:MAX_ERROR_CHARS]
            piece.finished_at = piece.finished_at or utcnow()
            return True

    def set_prompt_sources(self, batch_id: str, sources: Mapping[str, tuple[str, str | None]]) -> None:
        """Record where each piece's image prompt came from: piece id to ``(source, fallback reason)``.

        ``source`` is ``llm`` or ``rules``; a reason (why a model prompt fell back to the rules) is
        kept, redacted and cut short, and an earlier reason stays when none is given.
        ``RecordNotFound`` for an unknown batch; ids of no piece of the batch are ignored.
        """
        for piece_id, (source, _) in sources.items():
            if source not in PROMPT_SOURCES:
                raise InvalidInput(
                    f"prompt source of {piece_id!r} must be one of {PROMPT_SOURCES}, not {source!r}"
                )
        with self._db.write() as session:
            load_batch(session, batch_id)
            for piece_id, (source, reason) in sources.items():
                values: dict[str, str] = {"prompt_source": source}
                if reason:
                    values["prompt_fallback"] = redact_text(reason)[:MAX_FALLBACK_CHARS]
                session.execute(
                    update(PieceORM)
                    .where(PieceORM.id == piece_id, PieceORM.batch_id == batch_id)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )

    def prompt_sources(self, batch_id: str) -> dict[str, str]:
        """Piece id to ``llm`` or ``rules`` for the batch's pieces that have a recorded source."""
        with self._db.read() as session:
            load_batch(session, batch_id)
            rows = session.execute(
                select(PieceORM.id, PieceORM.prompt_source).where(
                    PieceORM.batch_id == batch_id, PieceORM.prompt_source.is_not(None)
                )
            )
            return {piece_id: str(source) for piece_id, source in rows}

    def batch_holding_piece_ids(self, piece_ids: Sequence[str], *, other_than: str) -> str | None:
        """A batch other than ``other_than`` that has a piece with one of these ids, or None."""
        with self._db.read() as session:
            return session.scalars(
                select(PieceORM.batch_id)
                .where(PieceORM.id.in_(list(piece_ids)), PieceORM.batch_id != other_than)
                .limit(1)
            ).first()


def clear_verdict(piece: PieceORM) -> None:
    piece.verdict = piece.tier = piece.moderation_scores = piece.moderation_reasons = None
    piece.moderated_hash = None


def hooks_of(piece: PieceORM) -> list[Hook]:
    return [
        Hook(
            style=HookStyle(h.style),
            text=h.text,
            call_to_action=h.call_to_action,
            hashtags=list(h.hashtags),
            platform=Platform(h.platform),
            quality_gate=h.quality_gate,
        )
        for h in piece.hooks
    ]


def content_hash_of(piece: PieceORM) -> str:
    """``judged_hash`` of the piece as stored now: its image's sha256, its prompt and every hook caption."""
    return judged_hash(piece.content_sha256, judged_texts(piece.prompt, hooks_of(piece)))


_ROW_COLUMNS = tuple(f.name for f in fields(PieceRow) if f.name != "hooks")


def to_row(piece: PieceORM) -> PieceRow:
    values = {name: getattr(piece, name) for name in _ROW_COLUMNS}
    values["status"] = PieceStatus(piece.status)
    values["verdict"] = None if piece.verdict is None else Verdict(piece.verdict)
    return PieceRow(**values, hooks=tuple(hooks_of(piece)))
