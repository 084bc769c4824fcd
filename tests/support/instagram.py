"""A fake of Instagram's Graph API (containers, publishing limit, media_publish) and a publisher on it."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import SecretStr

from contentforge.publishing.instagram import InstagramPublisher
from contentforge.publishing.media import MediaResolver
from support.publishing import FakeApi, Request, Response, World, no_sleep

TOKEN = "IGQVJ-secret-token-123456"
USER = "17841400000000001"


class FakeGraph(FakeApi):
    """content_publishing_limit, media containers with a status script, media_publish, permalinks."""

    def __init__(self, statuses: list[str], quota_usage: int = 0) -> None:
        super().__init__()
        self.statuses = statuses
        self.quota_usage = quota_usage
        self.containers: dict[str, list[str]] = {}
        self.captions: dict[str, str] = {}  # container → caption
        self.published: dict[str, str] = {}  # container → media id
        self.media: list[dict[str, str]] = []  # the account's posts, newest first

    def handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return 400, {}, {"error": {"message": "Invalid OAuth access token", "code": 190}}
        path = request.path.removeprefix("/v21.0")
        if path == f"/{USER}/content_publishing_limit":
            assert request.query["fields"] == ["quota_usage,config"]
            config = {"quota_total": 50, "quota_duration": 86400}
            return 200, {}, {"data": [{"quota_usage": self.quota_usage, "config": config}]}
        if path == f"/{USER}/media" and request.method == "POST":
            form = request.form()
            if not form.get("image_url", "").startswith("https://"):
                return 400, {}, {"error": {"message": "Only photo or video can be accepted", "code": 9004}}
            cid = f"c{len(self.containers) + 1}"
            self.containers[cid] = list(self.statuses)
            self.captions[cid] = form.get("caption", "")
            return 200, {}, {"id": cid}
        if path == f"/{USER}/media_publish":
            cid = request.form()["creation_id"]
            if self.containers.get(cid, ["?"])[0] != "FINISHED":
                return 400, {}, {"error": {"message": "Media ID is not available", "code": 9007}}
            media_id = f"m{len(self.published) + 1}"
            self.published[cid] = media_id
            self.containers[cid] = ["PUBLISHED"]
            self.quota_usage += 1
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
            post = {"id": media_id, "caption": self.captions[cid], "timestamp": stamp}
            self.media.insert(0, {**post, "permalink": f"https://www.instagram.com/p/{media_id}/"})
            return 200, {}, {"id": media_id}
        if path == f"/{USER}/media" and request.method == "GET":
            assert request.query["fields"] == ["id,caption,timestamp,permalink"]
            return 200, {}, {"data": self.media[: int(request.query["limit"][0])]}
        cid = path.strip("/")
        if cid in self.containers:
            script = self.containers[cid]
            status = script.pop(0) if len(script) > 1 else script[0]
            detail = "Error: image could not be fetched" if status == "ERROR" else ""
            return 200, {}, {"id": cid, "status_code": status, "status": detail}
        if cid in self.published.values():
            return 200, {}, {"id": cid, "permalink": f"https://www.instagram.com/p/{cid}/"}
        return 404, {}, {"error": {"message": "Unsupported get request", "code": 100}}


def publisher(world: World, api: FakeApi, **kwargs: object) -> InstagramPublisher:
    return InstagramPublisher(
        user_id=USER, access_token=SecretStr(TOKEN), media=MediaResolver(world.storage),
        base_url=f"{api.url}/v21.0", poll_interval_s=0.0, poll_max=5, sleep=no_sleep, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
