"""A fake of TikTok's Content Posting API (creator info, direct post init, status polling)."""

from __future__ import annotations

from support.publishing import FakeApi, Request, Response

TOKEN = "act.tiktok-user-token-42"
OK = {"code": "ok", "message": "", "log_id": "202601010000"}


class FakeTikTok(FakeApi):
    def __init__(self, *, audited: bool = True, outcome: str = "PUBLISH_COMPLETE") -> None:
        super().__init__()
        self.audited = audited
        self.outcome = outcome
        self.inits: list[dict] = []  # type: ignore[type-arg]
        self.polls = 0

    def handle(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {}, {"error": {"code": "access_token_invalid", "message": "bad token"}}
        if request.path == "/v2/post/publish/creator_info/query/":
            options = (
                ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
                if self.audited
                else ["SELF_ONLY"]
            )
            data = {
                "creator_username": "mia.moves",
                "privacy_level_options": options,
                "comment_disabled": False,
            }
            return 200, {}, {"data": data, "error": OK}
        if request.path == "/v2/post/publish/content/init/":
            body = request.json()
            if not self.audited and body["post_info"]["privacy_level"] != "SELF_ONLY":
                error = {
                    "code": "unaudited_client_can_only_post_to_private_accounts",
                    "message": "private only",
                }
                return 403, {}, {"error": error}
            self.inits.append(body)
            return 200, {}, {"data": {"publish_id": f"p_pub_url~v2.{len(self.inits)}"}, "error": OK}
        if request.path == "/v2/post/publish/status/fetch/":
            self.polls += 1
            if self.polls < 3:
                return 200, {}, {"data": {"status": "PROCESSING_DOWNLOAD"}, "error": OK}
            if self.outcome == "FAILED":
                return (
                    200,
                    {},
                    {"data": {"status": "FAILED", "fail_reason": "picture_size_check_failed"}, "error": OK},
                )
            ids = [7345678901234567890] if body_privacy(self) != "SELF_ONLY" else []
            return (
                200,
                {},
                {"data": {"status": "PUBLISH_COMPLETE", "publicaly_available_post_id": ids}, "error": OK},
            )
        return 404, {}, {"error": {"code": "not_found", "message": request.path}}


def body_privacy(api: FakeTikTok) -> str:
    return api.inits[-1]["post_info"]["privacy_level"]
