"""A fake of the X API v2 endpoints the publisher uses: media upload, metadata, post creation."""

from __future__ import annotations

import base64
import time

from support.publishing import FakeApi, Request, Response

TOKEN = "x-user-token-0123456789"


class FakeX(FakeApi):
    def __init__(self, limited: int = 0, reset_in: int = 120) -> None:
        super().__init__()
        self.limited = limited
        self.reset_in = reset_in
        self.media: dict[str, bytes] = {}
        self.posts: list[dict] = []  # type: ignore[type-arg]

    def handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {}, {"title": "Unauthorized", "status": 401}
        if request.path == "/2/media/upload":
            body = request.json()
            assert body["media_category"] == "tweet_image" and body["media_type"] == "image/png"
            media_id = str(1146654567674912769 + len(self.media))
            self.media[media_id] = base64.b64decode(body["media"])
            return (
                200,
                {},
                {"data": {"id": media_id, "media_key": f"3_{media_id}", "size": len(self.media[media_id])}},
            )
        if request.path == "/2/media/metadata":
            return 200, {}, {"data": {"associated_metadata": True, "id": request.json()["id"]}}
        if request.path == "/2/tweets":
            if self.limited:
                self.limited -= 1
                reset = str(int(time.time()) + self.reset_in)
                return (
                    429,
                    {"x-rate-limit-reset": reset, "x-rate-limit-remaining": "0"},
                    {"title": "Too Many Requests"},
                )
            body = request.json()
            assert all(m in self.media for m in body["media"]["media_ids"])
            self.posts.append(body)
            return 201, {}, {"data": {"id": str(1445880548472328192 + len(self.posts)), "text": body["text"]}}
        return 404, {}, {"title": "Not Found"}
