"""Local HTTP servers speaking the Anthropic Messages API and the OpenAI Chat Completions API.

Each server checks what the real API checks first (path, auth header, required body fields) and
then answers from a script of replies, so tests can play success with usage, 429 with
retry-after, 401, 5xx and slow answers. Every request is recorded for assertions.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from loopback import LoopbackServer


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeLlmServer(LoopbackServer):
    """Base: a threaded server on 127.0.0.1:0 answering scripted replies in order."""

    path = ""
    auth_header = ""

    def __init__(self, api_key: str | None = "test-key") -> None:
        self.api_key = api_key
        self.replies: deque[Reply] = deque()
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append(Request(self.path, headers, body))
                reply = server.answer(self.path, headers, body)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                payload = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._serve(Handler)

    # script
    def push(self, reply: Reply) -> FakeLlmServer:
        self.replies.append(reply)
        return self

    def answer(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        if path != self.path:
            return self.error(404, "not_found_error", f"no route {path}")
        if problem := self.check(headers, body):
            return problem
        if not self.replies:
            return self.error(500, "api_error", "the test script has no reply left")
        return self.replies.popleft()

    # to implement per API
    def check(self, headers: dict[str, str], body: dict[str, Any]) -> Reply | None:
        raise NotImplementedError

    def error(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Reply:
        raise NotImplementedError

    @property
    def prompts(self) -> list[str]:
        raise NotImplementedError


class FakeAnthropic(FakeLlmServer):
    """``POST /v1/messages`` as documented: API key, anthropic-version, model/max_tokens/messages."""

    path = "/v1/messages"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check(self, headers: dict[str, str], body: dict[str, Any]) -> Reply | None:
        # the API takes the key as x-api-key or, as SDK 2.x sends it, an Authorization bearer token
        presented = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if presented != self.api_key:
            return self.error(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in headers:
            return self.error(400, "invalid_request_error", "anthropic-version header is required")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return self.error(400, "invalid_request_error", f"{name}: Field required")
        return None

    def error(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Reply:
        return Reply(status, {"type": "error", "error": {"type": kind, "message": message}}, headers or {})

    def text(
        self,
        text: str,
        input_tokens: int = 10,
        output_tokens: int = 20,
        model: str = "claude-test",
        **kw: Any,
    ) -> FakeAnthropic:
        return self.push(
            Reply(
                200,
                {
                    "id": f"msg_{len(self.replies)}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
                },
                **kw,
            )
        )

    def fail(self, status: int, kind: str, message: str = "failure", **kw: Any) -> FakeAnthropic:
        return self.push(Reply(status, self.error(status, kind, message).body, **kw))

    @property
    def prompts(self) -> list[str]:
        return [r.body["messages"][-1]["content"] for r in self.requests if r.path == self.path]


class FakeOpenAI(FakeLlmServer):
    """``POST /v1/chat/completions`` as documented: Bearer auth, model and messages required."""

    path = "/v1/chat/completions"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def check(self, headers: dict[str, str], body: dict[str, Any]) -> Reply | None:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error(401, "invalid_request_error", "Incorrect API key provided")
        for name in ("model", "messages"):
            if name not in body:
                return self.error(400, "invalid_request_error", f"you must provide '{name}'")
        return None

    def error(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Reply:
        return Reply(
            status, {"error": {"message": message, "type": kind, "param": None, "code": None}}, headers or {}
        )

    def text(
        self, text: str, input_tokens: int = 10, output_tokens: int = 20, model: str = "gpt-test", **kw: Any
    ) -> FakeOpenAI:
        return self.push(
            Reply(
                200,
                {
                    "id": f"chatcmpl-{len(self.replies)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": input_tokens,
                        "completion_tokens": output_tokens,
                        "total_tokens": input_tokens + output_tokens,
                    },
                },
                **kw,
            )
        )

    def fail(self, status: int, kind: str, message: str = "failure", **kw: Any) -> FakeOpenAI:
        return self.push(Reply(status, self.error(status, kind, message).body, **kw))

    @property
    def prompts(self) -> list[str]:
        return [r.body["messages"][-1]["content"] for r in self.requests if r.path == self.path]
