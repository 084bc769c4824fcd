"""A verdict holds only for what it judged (issue 12, item 1): resume, rewrites and hand edits.

Reported: resuming a batch rewrote the hooks of pieces already moderated ``ready`` and did not
moderate them again, so a caption the policy rejects everywhere else was published. These tests use
the real ``moderate_piece`` and ``write_piece_hooks`` on a real database and storage.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from support.review import PromptScores, make_batch, persona

from contentforge.batch import ContentChanged, moderate_piece, write_piece_hooks
from contentforge.config import Settings, get_settings
from contentforge.db import Repository, make_engine, migrate
from contentforge.domain.binding import judged_hash, judged_texts
from contentforge.domain.models import Hook, HookStyle, Persona, PieceStatus, Platform, Template
from contentforge.moderation import CategoryScores, ModerationInput, ModerationPolicy, Moderator
from contentforge.moderation.review import ReviewQueue, ReviewStateError
from contentforge.storage import build_storage


class ChangingHookWriter:
    """A hook writer that answers differently on every call, as a model-written one may."""

    def __init__(self) -> None:
        self.calls = itertools.count()

    def write_hooks(
        self, persona: Persona, template: Template, platform: Platform, *, count: int, seed: int
    ) -> list[Hook]:
        call = next(self.calls)
        return [
            Hook(style=HookStyle.question, text=f"answer {call}", call_to_action="Follow", platform=platform)
        ]


@pytest.fixture()
def env(settings_env: Path) -> tuple[Repository, Settings]:
    settings = get_settings()
    migrate(settings.resolved_database_url)
    return Repository(make_engine(settings.resolved_database_url)), settings


def _moderator(settings: Settings, scorer: Any = None) -> Moderator:
    return Moderator([scorer or PromptScores()], ModerationPolicy.from_settings(settings))


def test_a_resumed_batch_keeps_moderated_hooks_and_does_not_pay_for_them_again(env) -> None:  # type: ignore[no-untyped-def]
    repo, settings = env
    make_batch(repo, settings, "b1", ["score:hate=0.0"])
    writer = ChangingHookWriter()
    piece = repo.get_piece("b1-000")
    assert piece is not None
    # The first run: hooks, then moderation.
    assert write_piece_hooks(piece, persona(), Platform.instagram, writer, repo) == 1  # type: ignore[arg-type]
    piece = repo.get_piece("b1-000")
    assert piece is not None
    assert moderate_piece(piece, build_storage(settings), _moderator(settings), repo) == "safe"
    moderated = repo.get_piece("b1-000")
    assert moderated is not None and moderated.status is PieceStatus.ready

    # The resume: the writer would answer differently, but finished hooks are not rewritten.
    assert write_piece_hooks(moderated, persona(), Platform.instagram, writer, repo) == 0  # type: ignore[arg-type]
    after = repo.get_piece("b1-000")
    assert after is not None and after.status is PieceStatus.ready
    assert [hook.text for hook in after.hooks] == ["answer 0"]
    assert after.moderated_hash == repo.content_hash("b1-000")
    assert next(writer.calls) == 1, "the writer was not even asked"


class RewritingScorer(PromptScores):
    """Rewrites the piece's hooks while it judges them, as a second runner or a hand edit could."""

    def __init__(self, repo: Repository, piece_id: str) -> None:
        self.repo, self.piece_id = repo, piece_id

    def scores(self, item: ModerationInput) -> CategoryScores:
        hook = Hook(style=HookStyle.question, text="swapped", call_to_action="", platform=Platform.instagram)
        self.repo.save_hooks(self.piece_id, [hook])
        return super().scores(item)


def test_a_piece_changed_while_it_was_moderated_is_not_made_ready(env) -> None:  # type: ignore[no-untyped-def]
    repo, settings = env
    make_batch(repo, settings, "b1", ["score:hate=0.0"])
    hook = Hook(style=HookStyle.question, text="judged", call_to_action="", platform=Platform.instagram)
    repo.save_hooks("b1-000", [hook])  # back to generated: the hooks were not judged yet
    piece = repo.get_piece("b1-000")
    assert piece is not None and piece.status is PieceStatus.generated
    with pytest.raises(ContentChanged, match="moderate it again"):
        moderate_piece(
            piece, build_storage(settings), _moderator(settings, RewritingScorer(repo, piece.id)), repo
        )
    changed = repo.get_piece("b1-000")
    assert changed is not None and changed.status is PieceStatus.generated and changed.verdict is None
    # The next pass judges what is there now and binds to it.
    assert moderate_piece(changed, build_storage(settings), _moderator(settings), repo) == "safe"
    bound = repo.get_piece("b1-000")
    assert bound is not None and bound.status is PieceStatus.ready
    assert bound.moderated_hash == judged_hash(bound.content_sha256, judged_texts(bound.prompt, bound.hooks))


def test_a_replaced_image_sends_the_piece_back_to_moderation(env) -> None:  # type: ignore[no-untyped-def]
    repo, settings = env
    make_batch(repo, settings, "b1", ["score:hate=0.0"])
    before = repo.get_piece("b1-000")
    assert before is not None and before.status is PieceStatus.ready and before.record is not None
    repo.mark_generated(
        "b1-000",
        record=before.record,
        storage_key=before.storage_key or "",
        url=before.url or "",
        content_sha256="f" * 64,  # other bytes
        queued_at=before.queued_at,  # type: ignore[arg-type]
        started_at=before.started_at,  # type: ignore[arg-type]
        finished_at=before.finished_at,  # type: ignore[arg-type]
        generation_seconds=1.0,
        cost_usd=0.0,
    )
    after = repo.get_piece("b1-000")
    assert after is not None and after.status is PieceStatus.generated and after.moderated_hash is None


def test_a_reviewer_cannot_approve_a_piece_edited_after_moderation(env) -> None:  # type: ignore[no-untyped-def]
    repo, settings = env
    make_batch(repo, settings, "b1", ["score:hate=0.47"])  # borderline: held for review
    hook = Hook(style=HookStyle.question, text="held", call_to_action="", platform=Platform.instagram)
    repo.save_hooks("b1-000", [hook])
    piece = repo.get_piece("b1-000")
    assert piece is not None
    moderate_piece(piece, build_storage(settings), _moderator(settings), repo)
    assert repo.get_piece("b1-000").status is PieceStatus.needs_review  # type: ignore[union-attr]
    with repo.engine.begin() as conn:  # an edit straight in the database, past every method
        conn.execute(text("UPDATE hooks SET text = 'edited by hand' WHERE piece_id = 'b1-000'"))
    with pytest.raises(ReviewStateError, match="changed after it was moderated"):
        ReviewQueue.from_settings(settings).approve("b1-000", reviewer="ana")
    assert repo.get_piece("b1-000").status is PieceStatus.needs_review  # type: ignore[union-attr]


def test_a_held_piece_whose_verdict_is_not_bound_is_moderated_again(env) -> None:  # type: ignore[no-untyped-def]
    """An upgraded database has verdicts from before binding: they are judged again, not trusted."""
    repo, settings = env
    make_batch(repo, settings, "b1", ["score:hate=0.47"])  # borderline: held for review
    with repo.engine.begin() as conn:  # as migration 0005 leaves an older verdict
        conn.execute(text("UPDATE pieces SET moderated_hash = NULL WHERE id = 'b1-000'"))
    piece = repo.get_piece("b1-000")
    assert piece is not None and piece.status is PieceStatus.needs_review and piece.moderated_hash is None
    moderate_piece(piece, build_storage(settings), _moderator(settings), repo)
    judged = repo.get_piece("b1-000")
    assert judged is not None and judged.moderated_hash == repo.content_hash("b1-000")
