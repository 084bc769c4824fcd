"""Conversations benchmark: signed Instagram webhooks -> reply-to-message flow runs -> Send API.

Prints one JSON object. ``--messages`` inbound messages (default 200) across ``--conversations``
(default 20) are posted as signed Instagram Messaging webhooks to the real ASGI app (in-process
HTTP via httpx's ASGI transport: routing, signature check, storage, launch). Each stored message
starts a real ``reply-to-message`` flow run on a local ``prefect server`` (``InProcessReplyLauncher``:
``--workers`` threads run the flows here, as one cpu-pool worker process would); each reply is written
by the **offline engine** (no model) inside a slot of the ``llm`` global concurrency limit and sent to
a loopback server speaking the Send API's contract (``POST /{ig-id}/messages``), which notes when
each reply arrived. The messages go in rounds: one message per conversation, posted together, then
the next round once every reply of the round arrived (a user writes again after the answer).

Reported:

* ``webhook_to_reply_s`` p50/p95/max: from posting a webhook to its reply reaching the Send API;
* ``webhook_answer_s`` p50/p95: how long the webhook request itself took (it must not wait for the
  reply);
* ``replies_in_llm_slot_share``: replies whose writing ran inside an ``llm`` slot (all of them, or
  the limit was bypassed), and ``peak_concurrent_writers`` vs ``llm_limit``: the most writings that
  overlapped in time (from the stored ``generated_from``/``generated_to``), which must not exceed
  the limit;
* ``replies``, ``exactly_one_reply_each``, ``disclosed_first_replies``, ``wall_s``, ``replies_per_s``.

    python benchmarks/chat_replies.py                    # 200 messages, 20 conversations
    python benchmarks/chat_replies.py --messages 40 --conversations 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ACCOUNT = "17841400000000001"
APP_SECRET = "bench-app-secret"
TOKEN = "bench-page-token"


class SendApiStandIn:
    """A loopback server speaking the Instagram Send API's contract; notes each reply's arrival."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.texts: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                ok = (
                    self.path == f"/{ACCOUNT}/messages"
                    and self.headers.get("authorization") == f"Bearer {TOKEN}"
                )
                recipient = body.get("recipient", {}).get("id")
                if ok and recipient:
                    with outer.lock:
                        outer.arrivals.setdefault(recipient, []).append(time.perf_counter())
                        outer.texts.setdefault(recipient, []).append(body["message"]["text"])
                        count = sum(len(v) for v in outer.arrivals.values())
                    payload = json.dumps(
                        {"recipient_id": recipient, "message_id": f"mid.out.{count}"}
                    ).encode()
                    self.send_response(200)
                else:
                    payload = b'{"error": {"message": "bad request", "code": 100}}'
                    self.send_response(400)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 4)


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def delivery(user: str, mid: str, text: str) -> bytes:
    now_ms = int(time.time() * 1000)
    item = {
        "sender": {"id": user},
        "recipient": {"id": ACCOUNT},
        "timestamp": now_ms,
        "message": {"mid": mid, "text": text},
    }
    return json.dumps(
        {"object": "instagram", "entry": [{"id": ACCOUNT, "time": now_ms, "messaging": [item]}]}
    ).encode()


async def post_round(client: Any, round_index: int, users: list[str]) -> tuple[dict[str, float], list[float]]:
    from pydantic import SecretStr

    from contentforge.chat.webhooks import meta_signature

    posted: dict[str, float] = {}
    answers: list[float] = []

    async def post(user: str) -> None:
        body = delivery(
            user, f"mid.{user}.{round_index}", f"message {round_index} from {user}: how is training going?"
        )
        headers = {
            "X-Hub-Signature-256": meta_signature(SecretStr(APP_SECRET), body),
            "content-type": "application/json",
        }
        posted[user] = time.perf_counter()
        response = await client.post("/api/v1/dm/webhooks/instagram", content=body, headers=headers)
        answers.append(time.perf_counter() - posted[user])
        if response.status_code != 200 or response.json()["received"] != 1:
            raise RuntimeError(f"webhook refused: {response.status_code} {response.text}")

    await asyncio.gather(*(post(user) for user in users))
    return posted, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--workers", type=int, default=8, help="Threads running reply flows in this process.")
    parser.add_argument("--port", type=int, default=4231, help="Port of the benchmark's own prefect server.")
    args = parser.parse_args()
    if args.messages % args.conversations:
        sys.exit("--messages must be a multiple of --conversations")

    work = Path(tempfile.mkdtemp(prefix="contentforge-chat-bench-"))
    send_api = SendApiStandIn()
    os.environ.update(
        {
            "PREFECT_HOME": str(work / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{args.port}/api",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "CONTENTFORGE_DATA_DIR": str(work / "data"),
            "CONTENTFORGE_TEXT_PROVIDERS": "offline",
            "CONTENTFORGE_API_TOKEN": "bench-api-token",
            "CONTENTFORGE_CHAT_ACCOUNTS": json.dumps({f"instagram:{ACCOUNT}": "ava"}),
            "CONTENTFORGE_INSTAGRAM_APP_SECRET": APP_SECRET,
            "CONTENTFORGE_INSTAGRAM_GRAPH_URL": send_api.url,
            "CONTENTFORGE_INSTAGRAM_USER_ID": ACCOUNT,
            "CONTENTFORGE_INSTAGRAM_ACCESS_TOKEN": TOKEN,
            "CONTENTFORGE_ALLOW_PRIVATE_URLS": "instagram_graph_url",
        }
    )
    import httpx

    from contentforge.config import get_settings
    from contentforge.db.chat import ConversationStore
    from contentforge.domain.models import Persona, Platform
    from contentforge.services import Services
    from contentforge_api import create_app
    from contentforge_api.dm_launcher import InProcessReplyLauncher
    from contentforge_cli.server import ensure_server, stop_server
    from tasks.bootstrap import ensure_concurrency_limit

    ensure_server(work / "prefect", port=args.port)
    try:
        settings = get_settings()
        ensure_concurrency_limit(settings.llm_concurrency_limit_name, settings.llm_concurrency)
        services = Services.from_settings(settings)
        services.repository.upsert_persona(
            Persona(
                id="ava",
                name="Ava Climbs",
                niche="fitness",
                appearance="athletic woman with short dark hair",
                personality_traits=["upbeat"],
                interests=["bouldering", "trail running"],
                tone="warm and direct",
                platforms=[Platform.instagram],
            )
        )
        app = create_app(settings)
        launcher = InProcessReplyLauncher(max_workers=args.workers)
        app.state.dm_launcher = launcher
        import flows.reply_to_message  # noqa: F401  (imports paid before the clock starts)

        users = [f"ig-user-{i:03d}" for i in range(args.conversations)]
        latencies: list[float] = []
        answers: list[float] = []

        async def run() -> float:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                started = time.perf_counter()
                for round_index in range(args.messages // args.conversations):
                    posted, round_answers = await post_round(client, round_index, users)
                    answers.extend(round_answers)
                    while True:
                        with send_api.lock:
                            done = all(len(send_api.arrivals.get(u, [])) > round_index for u in users)
                        if done:
                            break
                        if time.perf_counter() - started > 1800:
                            raise RuntimeError("replies did not arrive within 30 minutes")
                        await asyncio.sleep(0.01)
                    with send_api.lock:
                        latencies.extend(send_api.arrivals[u][round_index] - posted[u] for u in users)
                return time.perf_counter() - started

        wall = asyncio.run(run())
        results = launcher.wait(timeout_s=60)
        launcher.close()

        store = ConversationStore(services.sessions)
        replies = [
            m
            for c in store.conversations(limit=1000)
            for m in store.messages(c.id)
            if m.direction == "outbound" and m.status == "sent"
        ]
        first_disclosed = sum(
            1
            for c in store.conversations(limit=1000)
            if (sent := [m for m in store.messages(c.id) if m.direction == "outbound" and m.status == "sent"])
            and sent[0].disclosure
        )
        in_slot = [m for m in replies if (m.generation or {}).get("llm_slot")]
        intervals = [
            (m.generation["generated_from"], m.generation["generated_to"]) for m in in_slot if m.generation
        ]
        print(
            json.dumps(
                {
                    "messages": args.messages,
                    "conversations": args.conversations,
                    "workers": args.workers,
                    "engine": "offline",
                    "replies": len(replies),
                    "exactly_one_reply_each": len(replies) == args.messages
                    and all(
                        len(v) == args.messages // args.conversations for v in send_api.arrivals.values()
                    ),
                    "flow_runs_failed": sum(1 for r in results.values() if isinstance(r, Exception)),
                    "webhook_to_reply_s": {
                        "p50": percentile(latencies, 0.50),
                        "p95": percentile(latencies, 0.95),
                        "max": round(max(latencies), 4),
                        "mean": round(statistics.fmean(latencies), 4),
                    },
                    "webhook_answer_s": {"p50": percentile(answers, 0.50), "p95": percentile(answers, 0.95)},
                    "replies_in_llm_slot_share": round(len(in_slot) / max(1, len(replies)), 4),
                    "llm_limit": settings.llm_concurrency,
                    "peak_concurrent_writers": peak_overlap(intervals),
                    "disclosed_first_replies": f"{first_disclosed}/{args.conversations}",
                    "wall_s": round(wall, 3),
                    "replies_per_s": round(len(replies) / wall, 3),
                },
                indent=2,
            )
        )
    finally:
        stop_server(work / "prefect")


if __name__ == "__main__":
    main()
