"""A hook task writes several pieces' hooks (``tasks/text.py``): one piece's failure neither stops the
others nor hides which piece failed, and the task's retry writes only what is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contentforge.db import PlannedPiece, Repository
from contentforge.personas import sample_persona
from tasks import resources, text


def _plan(repo: Repository, batch_id: str, count: int) -> list[str]:
    repo.create_batch(
        batch_id=batch_id,
        persona_id=sample_persona().id,
        platform="instagram",
        num_pieces=count,
        tier_mix={"safe": 1.0},
        seed=0,
        params={},
        flow_run_id=None,
    )
    ids = [f"{batch_id}-{i:03d}" for i in range(count)]
    pieces = [
        PlannedPiece(
            piece_id=pid,
            index=i,
            template_id="FIT-001",
            template_tier="safe",
            prompt="p",
            negative_prompt="",
            seed=i,
        )
        for i, pid in enumerate(ids)
    ]
    repo.add_planned_pieces(batch_id, pieces)
    return ids


def test_a_failing_piece_leaves_the_others_hooked_and_the_retry_writes_only_it(
    settings_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = resources.repository()
    repo.upsert_persona(sample_persona())
    ids = _plan(repo, "hooks-batch", 3)
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
