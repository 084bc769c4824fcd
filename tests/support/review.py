"""The review tests' batch: pieces generated, stored and moderated by a scripted moderator."""

from __future__ import annotations

from datetime import UTC, datetime

from PIL import Image

from contentforge.batch import moderate_piece
from contentforge.config import Settings
from contentforge.db import PlannedPiece, Repository
from contentforge.domain.models import GenerationRecord, Persona, Platform
from contentforge.images.provenance import png_with_provenance
from contentforge.moderation import CategoryScores, ModerationInput, ModerationPolicy, Moderator
from contentforge.storage import build_storage

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class PromptScores:
    """Test double: scores chosen per piece through a marker in the prompt (``score:hate=0.47``)."""

    name = "scripted"

    def scores(self, item: ModerationInput) -> CategoryScores:
        for text in item.texts:
            if text.startswith("score:"):
                category, value = text.removeprefix("score:").split("=")
                return CategoryScores({category: float(value)}, [f"scripted {category}"])
        return CategoryScores.zero()


def persona(persona_id: str = "mia") -> Persona:
    return Persona(
        id=persona_id,
        name=persona_id.title(),
        niche="Fitness",
        appearance="athletic woman",
        personality_traits=["upbeat"],
        interests=["running"],
        tone="warm",
        platforms=[Platform.instagram],
    )


def make_batch(
    repo: Repository, settings: Settings, batch_id: str, prompts: list[str], who: str = "mia"
) -> None:
    """A batch whose pieces are generated, stored and moderated through the real ``moderate_piece``."""
    repo.upsert_persona(persona(who))
    repo.create_batch(
        batch_id=batch_id,
        persona_id=who,
        platform="instagram",
        num_pieces=len(prompts),
        tier_mix={"safe": 1.0},
        seed=1,
        params={},
        flow_run_id=None,
    )
    repo.add_planned_pieces(
        batch_id,
        [
            PlannedPiece(f"{batch_id}-{i:03d}", i, "FIT-001", "safe", prompt, "", i)
            for i, prompt in enumerate(prompts)
        ],
    )
    storage = build_storage(settings)
    moderator = Moderator([PromptScores()], ModerationPolicy.from_settings(settings))
    for i, prompt in enumerate(prompts):
        piece_id = f"{batch_id}-{i:03d}"
        record = GenerationRecord(
            backend="tiny",
            model="tiny",
            prompt=prompt,
            seed=i,
            steps=1,
            guidance_scale=1.0,
            width=64,
            height=64,
        )
        png = png_with_provenance(Image.new("RGB", (64, 64), (i * 20, 10, 10)), record)
        stored = storage.put(f"{who}/{piece_id}.png", png, "image/png")
        repo.mark_generated(
            piece_id,
            record=record,
            storage_key=stored.key,
            url=stored.url,
            content_sha256=stored.sha256,
            queued_at=T0,
            started_at=T0,
            finished_at=T0,
            generation_seconds=0.1,
            cost_usd=0.0,
        )
        moderate_piece(repo.get_piece(piece_id), storage, moderator, repo)
