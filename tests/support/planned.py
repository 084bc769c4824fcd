"""A batch of planned pieces written straight through the repository, for tests of what happens to
pieces after planning (hook tasks, the follow-up loop) that need no template selection or flow."""

from __future__ import annotations

from contentforge.db import PlannedPiece, Repository
from contentforge.personas import sample_persona


def plan_batch(repo: Repository, batch_id: str, count: int) -> list[str]:
    """Create ``batch_id`` for the sample persona (which must be stored) with ``count`` planned
    pieces ``<batch_id>-000``…; their ids, in order."""
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
    repo.add_planned_pieces(
        batch_id,
        [
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
        ],
    )
    return ids
