"""Loopback fakes for conversations: an OpenAI-compatible model that echoes facts, and the DM APIs.

``EchoChatModel`` implements ``POST /v1/chat/completions`` (Bearer auth, ``model`` and ``messages``
required). Its answer repeats every fact phrased "my <thing> is <value>" found in the messages it
was sent, so a test can tell whether the history reached the model: it cannot recall what it was
not sent. ``script`` makes it answer fixed texts instead (a model that misbehaves).

``FakeDmPlatforms`` implements the two send endpoints as documented: Instagram's
``POST /{ig-account-id}/messages`` (Bearer token, ``recipient.id`` and ``message.text``; answers
``recipient_id`` and ``message_id``) and X's ``POST /2/dm_conversations/with/{participant_id}/messages``
(Bearer token, ``text``; answers 201 with ``data.dm_conversation_id`` and ``data.dm_event_id``).
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from support.loopback import LoopbackServer

FACT = re.compile(r"\bmy ([a-z' ]{2,30}?) is ([A-Za-z0-9-]+)", re.IGNORECASE)


def _handler(server: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer, *extra = server.answer(self.path, headers, body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


class EchoChatModel(LoopbackServer):
    def __init__(self, api_key: str = "local-key") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.scripted: deque[str] = deque()
        self._lock = threading.Lock()
        self._serve(_handler(self))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *texts: str) -> EchoChatModel:
        self.scripted.extend(texts)
        return self

    def answer(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}}
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}}
        if not isinstance(body, dict) or "model" not in body or not body.get("messages"):
            return 400, {
                "error": {"message": "model and messages are required", "type": "invalid_request_error"}
            }
        with self._lock:
            self.requests.append(body)
            scripted = self.scripted.popleft() if self.scripted else None
        if scripted is not None:
            text = scripted
        else:
            said = "\n".join(m.get("content", "") for m in body["messages"] if m.get("role") == "user")
            facts = [f"your {thing} is {value}" for thing, value in FACT.findall(said)]
            text = f"I remember {'; '.join(dict.fromkeys(facts))}!" if facts else "Love that, tell me more!"
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
        }

    @property
    def user_prompts(self) -> list[str]:
        return [m["content"] for r in self.requests for m in r["messages"] if m["role"] == "user"]

    @property
    def system_prompts(self) -> list[str]:
        return [m["content"] for r in self.requests for m in r["messages"] if m["role"] == "system"]


@dataclass(frozen=True)
class Sent:
    platform: str
    user_id: str
    text: str


class FakeDmPlatforms(LoopbackServer):
    INSTAGRAM_ACCOUNT = "17841400000000001"
    X_ACCOUNT = "990001"

    def __init__(self, token: str = "platform-token") -> None:
        self.token = token
        self.sent: list[Sent] = []
        self.failures: deque[tuple[int, Any, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        self._serve(_handler(self))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Answer the next send with ``status``, ``body`` and ``headers`` (e.g. ``Retry-After``)."""
        self.failures.append((status, body, headers or {}))

    def answer(self, path: str, headers: dict[str, str], body: Any) -> tuple[Any, ...]:
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {
                "error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}
            }
        with self._lock:
            if self.failures:
                return self.failures.popleft()
            if path == f"/{self.INSTAGRAM_ACCOUNT}/messages":
                recipient = (body or {}).get("recipient", {}).get("id")
                text = (body or {}).get("message", {}).get("text")
                if not recipient or not isinstance(text, str) or not text:
                    return 400, {"error": {"message": "(#100) recipient and message required", "code": 100}}
                if len(text) > 1000:
                    return 400, {"error": {"message": "(#100) text longer than 1000", "code": 100}}
                self.sent.append(Sent("instagram", recipient, text))
                return 200, {"recipient_id": recipient, "message_id": f"mid.out.{len(self.sent)}"}
            match = re.fullmatch(r"/2/dm_conversations/with/([0-9]+)/messages", path)
            if match:
                text = (body or {}).get("text")
                if not isinstance(text, str) or not text:
                    return 400, {"title": "Invalid Request", "detail": "text is required"}
                self.sent.append(Sent("x", match.group(1), text))
                return 201, {
                    "data": {
                        "dm_conversation_id": f"{match.group(1)}-{self.X_ACCOUNT}",
                        "dm_event_id": f"{len(self.sent)}00",
                    }
                }
        return 404, {"error": {"message": f"no route {path}"}}


class NotifyEndpoint(LoopbackServer):
    """The receiving end of the notify webhook: records each POST's headers and JSON body, answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], Any]] = []
        self._lock = threading.Lock()
        self._serve(_handler(self))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def answer(self, path: str, headers: dict[str, str], body: Any) -> tuple[Any, ...]:
        with self._lock:
            self.received.append((headers, body))
        return 200, {"ok": True}
