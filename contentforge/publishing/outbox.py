"""The offline default publisher: posts become files in ``{data_dir}/outbox/{platform}/``.

Each publication writes ``{piece_id}.json`` (caption, media, idempotency key, times) and a copy
of its image beside it, both atomically (``contentforge.files``), so a reader or a
sync job never sees half a post. Publishing the same publication again returns the existing post
and rewrites nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from contentforge.files import atomic_write_bytes
from contentforge.publishing.media import MediaResolver, image_piece_id
from contentforge.publishing.protocol import PermanentFailure, Publication, PublishedPost


class OutboxPublisher:
    """Writes posts to a local directory; always available, needs no credentials."""

    name = "outbox"
    publish_is_idempotent = True
    """An existing file with this publication's idempotency key is returned, not written again."""

    def __init__(self, root: Path, media: MediaResolver | None = None) -> None:
        self.root = Path(root)
        self.media = media or MediaResolver(None)

    def paths(self, publication: Publication) -> tuple[Path, Path]:
        folder = self.root / publication.platform
        suffix = Path(publication.storage_key or publication.media_url or "image.png").suffix or ".png"
        return folder / f"{publication.piece_id}.json", folder / f"{publication.piece_id}{suffix}"

    def prepare(self, publication: Publication) -> str | None:
        return None

    def publish(self, publication: Publication, container_id: str | None) -> PublishedPost:
        json_path, image_path = self.paths(publication)
        if json_path.is_file():
            existing = json.loads(json_path.read_text(encoding="utf-8"))
            if existing.get("idempotency_key") != publication.idempotency_key:
                raise PermanentFailure(
                    f"outbox file {json_path} belongs to another publication "
                    f"({existing.get('idempotency_key')!r}); remove it to publish again"
                )
            return PublishedPost(
                publication.idempotency_key, json_path.resolve().as_uri(), {"written": False}
            )
        image = self.media.load_bytes(publication)  # checked against the image moderation judged
        if not image_path.is_file() or image_path.read_bytes() != image:
            atomic_write_bytes(image_path, image)
        record = {
            "idempotency_key": publication.idempotency_key,
            "piece_id": publication.piece_id,
            "persona_id": publication.persona_id,
            "platform": publication.platform,
            "caption": publication.caption,
            "alt_text": publication.alt_text,
            "media_url": publication.media_url,
            "image": image_path.name,
            "image_piece_id": image_piece_id(publication),  # a variation's when it is the chosen cover
            "scheduled_for": publication.scheduled_for.isoformat() if publication.scheduled_for else None,
            "published_at": datetime.now(UTC).isoformat(),
        }
        atomic_write_bytes(json_path, json.dumps(record, indent=2, ensure_ascii=False).encode("utf-8"))
        return PublishedPost(publication.idempotency_key, json_path.resolve().as_uri(), {"written": True})
