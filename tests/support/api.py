"""A small world for the API and gallery tests: two personas, two batches, real PNG files, verdicts.

Batch ``b1`` (instagram, persona ``ava``): 0 ready/safe, 1 ready/suggestive, 2 and 3 needs_review,
4 rejected, 5 planned (no image yet). Batch ``b2`` (tiktok): 0 and 1 ready/safe. Piece ``b1-000``'s
first hook contains markup, to prove the gallery shows it as text. ``add_variations`` adds a piece
with its variations, for the tests of what names a variation's parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from PIL import Image

from contentforge.config import Settings
from contentforge.db import PlannedPiece, Repository, make_engine, migrate
from contentforge.domain.models import (
    GenerationRecord,
    Hook,
    HookStyle,
    ModerationVerdict,
    Persona,
    Platform,
    Verdict,
)
from contentforge.images.provenance import png_with_provenance
from contentforge.piece_variations import VariationPlan, plan_variations
from contentforge.storage import build_storage, content_key

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
MARKUP_HOOK = "<img src=x onerror=\"document.title='pwned'\"><b>bold</b> & leg day"
B1 = [
    # (template, template tier, verdict, needs review?)
    ("FIT-001", "safe", Verdict.safe, False),
    ("FIT-006", "suggestive", Verdict.suggestive, False),
    ("FIT-002", "safe", Verdict.safe, True),
    ("FIT-003", "safe", Verdict.suggestive, True),
    ("FIT-004", "safe", Verdict.rejected, False),
    ("FIT-005", "safe", None, False),
]


def persona(persona_id: str, name: str, platforms: list[Platform]) -> Persona:
    return Persona(
        id=persona_id,
        name=name,
        niche="fitness",
        appearance="athletic woman with short dark hair",
        personality_traits=["upbeat"],
        interests=["running", "climbing"],
        tone="warm and direct",
        platforms=platforms,
    )


@dataclass(frozen=True)
class World:
    repo: Repository
    settings: Settings


def _batch(
    repo: Repository, batch_id: str, persona_id: str, platform: str, n: int, started: datetime
) -> None:
    repo.create_batch(
        batch_id=batch_id,
        persona_id=persona_id,
        platform=platform,
        num_pieces=n,
        tier_mix={"safe": 0.7, "suggestive": 0.3},
        seed=7,
        params={},
        flow_run_id=None,
    )
    # create_batch stamps "now"; the listing orders batches by start, so make the order explicit.
    from sqlalchemy import update

    from contentforge.db.models import BatchORM

    with repo.engine.begin() as connection:
        connection.execute(update(BatchORM).where(BatchORM.id == batch_id).values(started_at=started))


def _generate(
    repo: Repository,
    settings: Settings,
    persona_id: str,
    piece_id: str,
    index: int,
    size: tuple[int, int] = (64, 48),
) -> None:
    storage = build_storage(settings)
    record = GenerationRecord(
        backend="tiny", model="tiny", prompt=f"piece {piece_id}", seed=index, steps=1,
        guidance_scale=1.0, width=size[0], height=size[1],
    )  # fmt: skip
    png = png_with_provenance(Image.new("RGB", size, (40 * index % 255, 120, 200)), record)
    stored = storage.put(content_key(persona_id, piece_id, "png"), png, "image/png")
    repo.mark_generated(
        piece_id,
        record=record,
        storage_key=stored.key,
        url=stored.url,
        content_sha256=stored.sha256,
        queued_at=T0,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=1),
        generation_seconds=0.5 + index,
        cost_usd=0.002,
    )


def _hooks(platform: Platform, first: str) -> list[Hook]:
    texts = [first, "Leg day, done.", "Who else trains at 6am?"]
    return [
        Hook(style=style, text=text, call_to_action="Save this", hashtags=["fitness"], platform=platform)
        for style, text in zip((HookStyle.teaser, HookStyle.story, HookStyle.question), texts, strict=True)
    ]


def _verdict(repo: Repository, piece_id: str, verdict: Verdict, review: bool) -> None:
    sexual = {Verdict.safe: 0.05, Verdict.suggestive: 0.5, Verdict.rejected: 0.95}[verdict]
    scores = {"sexual": sexual, "violence": 0.01, "hate": 0.0, "self_harm": 0.0, "harassment": 0.02}
    reasons = ["sexual 0.95 >= 0.90"] if verdict is Verdict.rejected else []
    repo.save_verdict(
        piece_id,
        ModerationVerdict(
            verdict=verdict, scores=scores, reasons=reasons, backends=["nudenet", "text_rules"]
        ),
        review_reasons=["borderline: sexual close to a threshold"] if review else (),
    )


def build_world(settings: Settings) -> World:
    url = settings.resolved_database_url
    migrate(url)
    repo = Repository(make_engine(url))
    repo.upsert_persona(persona("ava", "Ava Stone", [Platform.instagram, Platform.tiktok]))
    repo.upsert_persona(persona("leo", "Leo Park", [Platform.x]))

    _batch(repo, "b1", "ava", "instagram", len(B1), T0)
    repo.add_planned_pieces(
        "b1",
        [
            PlannedPiece(f"b1-{i:03d}", i, t, tier, f"prompt {i}", "", i)
            for i, (t, tier, _, _) in enumerate(B1)
        ],
    )
    for i, (_, _, verdict, review) in enumerate(B1):
        if verdict is None:
            continue
        piece_id = f"b1-{i:03d}"
        _generate(repo, settings, "ava", piece_id, i)
        repo.save_hooks(piece_id, _hooks(Platform.instagram, MARKUP_HOOK if i == 0 else f"Hook {i}"))
        _verdict(repo, piece_id, verdict, review)
    repo.add_cost("b1", kind="text", provider="offline", amount_usd=0.001, piece_id="b1-000")

    _batch(repo, "b2", "ava", "tiktok", 2, T0 + timedelta(days=1))
    repo.add_planned_pieces(
        "b2", [PlannedPiece(f"b2-{i:03d}", i, "FIT-001", "safe", f"prompt {i}", "", i) for i in range(2)]
    )
    for i in range(2):
        _generate(repo, settings, "ava", f"b2-{i:03d}", i)
        _verdict(repo, f"b2-{i:03d}", Verdict.safe, False)
    return World(repo, settings)


def add_variations(world: World, count: int) -> VariationPlan:
    """Batch ``v0`` (instagram, ava): one stored piece ``v0-000``, and ``count`` seed variations of it
    planned through the library (``plan_variations``), in their own batch as the API and CLI make them.

    The parent is 64 x 64 because a variation replays its record as a request, and the world's 64 x 48
    pieces are below a request's smallest size.
    """
    repo = world.repo
    _batch(repo, "v0", "ava", "instagram", 1, T0 - timedelta(days=1))
    repo.add_planned_pieces("v0", [PlannedPiece("v0-000", 0, "FIT-001", "safe", "prompt v0", "", 3)])
    _generate(repo, world.settings, "ava", "v0-000", 3, size=(64, 64))
    _verdict(repo, "v0-000", Verdict.safe, False)
    return plan_variations(repo, "v0-000", "seed", count)
