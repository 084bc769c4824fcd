"""A hook task writes several pieces' hooks (``tasks/text.py``): one piece's failure neither stops the
others nor hides which piece failed, and the task's retry writes only what is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.planned import plan_batch

from contentforge.personas import sample_persona
from tasks import resources, text


def test_a_failing_piece_leaves_the_others_hooked_and_the_retry_writes_only_it(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    ids = plan_batch(repo, "hooks-batch", 3)
    real = text.write_piece_hooks
    attempts: list[str] = []

    def times_out_once_for_the_middle_piece(piece: Any, *args: Any) -> int:
        attempts.append(piece.id)
        if piece.id == ids[1] and attempts.count(piece.id) == 1:
            raise TimeoutError("the model did not answer")
        return real(piece, *args)

    monkeypatch.setattr(text, "write_piece_hooks", times_out_once_for_the_middle_piece)

    with pytest.raises(text.HooksFailed, match=f"no hooks for 1 of 3 pieces: {ids[1]}: TimeoutError"):
        text.write_hooks.fn(ids, "instagram", n=3)
    assert [repo.hook_platforms(piece_id) for piece_id in ids] == [{"instagram"}, set(), {"instagram"}]

    # The task's retry: the hooked pieces keep theirs, the failed one gets its five.
    assert text.write_hooks.fn(ids, "instagram", n=3) == 5
    assert all(repo.hook_platforms(piece_id) == {"instagram"} for piece_id in ids)
