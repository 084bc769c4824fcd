"""Helpers for the publishing tests: a database with pieces in every state, and fake API servers."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image
from sqlalchemy import Engine, select, update

from contentforge.config import Settings
from contentforge.db import PlannedPiece, Repository, make_engine, migrate
from contentforge.db.engine import make_session_factory
from contentforge.db.models import HookORM, PieceORM
from contentforge.domain.binding import judged_hash, judged_texts
from contentforge.domain.models import GenerationRecord, Hook, HookStyle, ModerationVerdict, Persona, Verdict
from contentforge.images.provenance import png_with_provenance
from contentforge.moderation.policy import ModerationPolicy
from contentforge.publishing.ledger import PublicationLedger
from contentforge.storage import LocalStorage

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def png_bytes(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A generated-looking PNG: it carries the AI provenance every stored image has."""
    record = GenerationRecord(
        backend="tiny-sdxl",
        model="tiny",
        prompt="p",
        seed=1,
        steps=1,
        guidance_scale=1.0,
        width=16,
        height=16,
    )
    return png_with_provenance(Image.new("RGB", (16, 16), color), record)


def make_persona(timezone: str = "Europe/Berlin", persona_id: str = "mia") -> Persona:
    return Persona(
        id=persona_id,
        name=f"Mia {persona_id}",
        niche="fitness",
        appearance="athletic woman with short dark hair",
        personality_traits=["upbeat"],
        interests=["running"],
        tone="friendly",
        timezone=timezone,
        platforms=["instagram", "x", "tiktok"],
    )


@dataclass
class World:
    engine: Engine
    repo: Repository
    storage: LocalStorage
    ledger: PublicationLedger
    batch_id: str
    pieces: dict[str, str] = field(default_factory=dict)
    """piece id → intended state label (ready-safe, ready-suggestive, needs_review, rejected, failed…)."""

    def ids(self, label: str) -> list[str]:
        return [pid for pid, lab in self.pieces.items() if lab == label]


def make_world(
    tmp_path: Path,
    states: list[str],
    *,
    url: str | None = None,
    timezone: str = "Europe/Berlin",
    public_base_url: str | None = None,
    hook_platforms: tuple[str, ...] = ("instagram", "x", "tiktok"),
    caption_writer: Any = None,
) -> World:
    """A migrated database whose batch has one piece per entry of ``states``.

    States: ``ready-safe``, ``ready-suggestive``, ``ready-restricted``, ``rejected``, ``needs_review``,
    ``failed``, ``planned``, ``generated``.
    """
    url = url or f"sqlite:///{tmp_path / 'pub.db'}"
    migrate(url)
    engine = make_engine(url)
    repo = Repository(engine)
    storage = LocalStorage(tmp_path / "data", public_base_url=public_base_url)
    persona = make_persona(timezone)
    repo.upsert_persona(persona)
    batch_id = "batch1"
    repo.create_batch(
        batch_id=batch_id,
        persona_id=persona.id,
        platform="instagram",
        num_pieces=len(states),
        tier_mix={"safe": 1.0, "suggestive": 0.0},
        seed=1,
        params={},
        flow_run_id=None,
    )
    planned = [
        PlannedPiece(f"p{i:02d}", i, "FIT-001", "safe", f"prompt {i}", "", i) for i in range(len(states))
    ]
    repo.add_planned_pieces(batch_id, planned)
    world = World(
        engine,
        repo,
        storage,
        PublicationLedger(engine, ModerationPolicy.from_settings(Settings()), caption_writer=caption_writer),
        batch_id,
    )
    for plan, state in zip(planned, states, strict=True):
        world.pieces[plan.piece_id] = state
        if state == "planned":
            continue
        key = f"content/{persona.id}/{plan.piece_id}.png"
        stored = storage.put(key, png_bytes((plan.index * 20 % 255, 10, 10)), "image/png")
        record = GenerationRecord(
            backend="tiny",
            model="tiny",
            prompt=plan.prompt,
            seed=plan.seed,
            steps=1,
            guidance_scale=1.0,
            width=16,
            height=16,
        )
        repo.mark_generated(
            plan.piece_id,
            record=record,
            storage_key=key,
            url=stored.url,
            content_sha256=stored.sha256,
            queued_at=T0,
            started_at=T0,
            finished_at=T0,
            generation_seconds=0.1,
            cost_usd=0.0,
        )
        repo.save_hooks(
            plan.piece_id,
            [
                Hook(
                    style=HookStyle.tip,
                    text=f"Hook {plan.index} for {p} 💪",
                    call_to_action="Follow along.",
                    hashtags=["fitness", "run"],
                    platform=p,
                )
                for p in hook_platforms
            ],
        )
        if state == "generated":
            continue
        verdict = {
            "ready-safe": Verdict.safe,
            "ready-suggestive": Verdict.suggestive,
            "ready-restricted": Verdict.restricted,
            "rejected": Verdict.rejected,
        }.get(state, Verdict.safe)
        repo.save_verdict(plan.piece_id, ModerationVerdict(verdict=verdict, scores={"sexual": 0.1}))
        bind_verdict(engine, plan.piece_id)
        if state in ("needs_review", "failed"):
            set_piece_status(engine, plan.piece_id, state)
    return world


def content_hash(engine: Engine, piece_id: str) -> str:
    """What moderation binds a verdict to: the stored image's sha256, the prompt and every hook."""
    with make_session_factory(engine)() as session:
        piece = session.get(PieceORM, piece_id)
        assert piece is not None
        hooks = [
            Hook(style=h.style, text=h.text, call_to_action=h.call_to_action, hashtags=h.hashtags,
                 platform=h.platform)
            for h in session.scalars(select(HookORM).where(HookORM.piece_id == piece_id))
        ]  # fmt: skip
        return judged_hash(piece.content_sha256, judged_texts(piece.prompt, hooks))


def bind_verdict(engine: Engine, piece_id: str) -> None:
    """Set ``moderated_hash`` the way moderation does, from the piece's current content."""
    digest = content_hash(engine, piece_id)
    with make_session_factory(engine)() as session, session.begin():
        session.execute(update(PieceORM).where(PieceORM.id == piece_id).values(moderated_hash=digest))


def set_piece_status(engine: Engine, piece_id: str, status: str) -> None:
    with make_session_factory(engine)() as session, session.begin():
        session.execute(update(PieceORM).where(PieceORM.id == piece_id).values(status=status))


# --- a fake HTTP API ---------------------------------------------------------------------------

Response = tuple[int, dict[str, str], Any]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


class FakeApi:
    """Subclass and implement ``handle``; counts requests by ``"METHOD /path"``."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.url = ""

    def handle(self, request: Request) -> Response:  # pragma: no cover - overridden
        raise NotImplementedError


@contextmanager
def serve(api: FakeApi) -> Iterator[FakeApi]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _do(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            parts = urlsplit(self.path)
            request = Request(
                self.command,
                parts.path,
                parse_qs(parts.query),
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length) if length else b"",
            )
            with api.lock:
                api.calls[f"{self.command} {parts.path}"] += 1
                api.requests.append(request)
                status, headers, payload = api.handle(request)
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _do

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def no_sleep(_seconds: float) -> None:
    return None


Crash = type("Crash", (BaseException,), {})
"""Stands for the process dying: not an Exception, so nothing in the code under test catches it."""


def crash_after(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        func(*args, **kwargs)
        raise Crash()

    return wrapper
