"""Local HTTP servers speaking the Anthropic Messages API and the OpenAI Chat Completions API.

Each server checks what the real API checks first (path, auth header, required body fields) and
then answers from a script of replies, so tests can play success with usage, 429 with
retry-after, 401, 5xx and slow answers. Every request is recorded for assertions.

Structured output is checked as the APIs document it: OpenAI's ``response_format`` of type
``json_schema`` needs a name and a schema, and with ``strict`` every object must list all its
properties as required and set ``additionalProperties: false``; Anthropic's ``tool_choice`` of type
``tool`` must name one of ``tools``, each with an object ``input_schema``. ``structured`` and
``tool_call`` play the answers those requests get.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from support.loopback import LoopbackServer


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
        tools = {t.get("name"): t for t in body.get("tools", [])}
        for name, tool in tools.items():
            if not isinstance(tool.get("input_schema"), dict) or tool["input_schema"].get("type") != "object":
                return self.error(400, "invalid_request_error", f"tools.{name}.input_schema: type 'object'")
        choice = body.get("tool_choice")
        if choice is not None and choice.get("type") == "tool" and choice.get("name") not in tools:
            return self.error(400, "invalid_request_error", "tool_choice names a tool not in tools")
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

    def tool_call(self, name: str, arguments: dict[str, Any], **kw: Any) -> FakeAnthropic:
        """An answer that calls tool ``name`` with ``arguments`` (what a forced ``tool_choice`` gets)."""
        return self.push(
            Reply(
                200,
                {
                    "id": f"msg_{len(self.replies)}",
                    "type": "message",
                    "role": "assistant",
                    "model": kw.pop("model", "claude-test"),
                    "content": [
                        {
                            "type": "tool_use",
                            "id": f"toolu_{len(self.replies)}",
                            "name": name,
                            "input": arguments,
                        }
                    ],
                    "stop_reason": "tool_use",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 10, "output_tokens": 20},
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
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema") or {}
            if not spec.get("name") or not isinstance(spec.get("schema"), dict):
                return self.error(400, "invalid_request_error", "json_schema needs a name and a schema")
            if spec.get("strict") and (problem := _not_strict(spec["schema"])):
                return self.error(
                    400, "invalid_request_error", f"Invalid schema for response_format: {problem}"
                )
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

    def structured(self, value: Any, **kw: Any) -> FakeOpenAI:
        """The answer to a ``json_schema`` request: the content is exactly the JSON document."""
        return self.text(json.dumps(value), **kw)

    def fail(self, status: int, kind: str, message: str = "failure", **kw: Any) -> FakeOpenAI:
        return self.push(Reply(status, self.error(status, kind, message).body, **kw))

    @property
    def prompts(self) -> list[str]:
        return [r.body["messages"][-1]["content"] for r in self.requests if r.path == self.path]


def _not_strict(node: Any, path: str = "schema") -> str | None:
    """Why ``node`` breaks OpenAI's strict-mode rules for objects, or None."""
    if isinstance(node, list):
        return next((p for i, item in enumerate(node) if (p := _not_strict(item, f"{path}[{i}]"))), None)
    if not isinstance(node, dict):
        return None
    if node.get("type") == "object":
        if node.get("additionalProperties") is not False:
            return f"{path}: 'additionalProperties' is required to be supplied and to be false"
        missing = set(node.get("properties", {})) - set(node.get("required", []))
        if missing:
            return f"{path}: 'required' is required to include every property; missing {sorted(missing)}"
    return next((p for key, value in node.items() if (p := _not_strict(value, f"{path}.{key}"))), None)
