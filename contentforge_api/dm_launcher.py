"""Start ``reply-to-message`` flow runs for stored inbound messages: no model call in a request.

``DeploymentReplyLauncher`` creates a run of the deployment with ``run_deployment(..., timeout=0)``
(the async form) and returns at once, like ``contentforge_api.launcher.BatchLauncher``; the
idempotency key is the message id, so a second launch for one message (a redelivered webhook whose
first run has not answered yet) gets the same flow run back. A worker of the cpu pool runs it.

``InProcessReplyLauncher`` runs the flow function in this process's threads instead (each call is
still a Prefect flow run on the configured server): for the tests and the benchmark, which set it
as ``app.state.dm_launcher``. It keeps every launch's future so ``wait`` can report them, so it is
not meant for a long-running API (use the deployment and a worker there).

``accept_inbound`` is what every channel does with a message: store it once (a duplicate is noticed
by its platform id), then start the reply unless the message was already handled.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from contentforge.db.chat import ConversationStore, Inbound
from contentforge_api.launcher import BatchLauncher, PrefectUnavailable
from contentforge_api.state import ApiState

log = logging.getLogger(__name__)


class ReplyLauncher(Protocol):
    async def launch(self, message_id: str) -> str | None:
        """Start the reply to ``message_id``; the flow run id where one is known at once."""
        ...


class DeploymentReplyLauncher:
    """Runs of the ``reply-to-message`` deployment, through the batch launcher's Prefect handling."""

    def __init__(self, deployment_name: str) -> None:
        self._prefect = BatchLauncher(deployment_name)

    async def launch(self, message_id: str) -> str | None:
        run = await self._prefect.launch(
            {"message_id": message_id}, tags=["contentforge", "chat"], idempotency_key=f"reply:{message_id}"
        )
        return str(run.id)


class InProcessReplyLauncher:
    """Runs ``flows.reply_to_message`` in a thread pool of this process."""

    def __init__(self, max_workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="reply")
        self._lock = threading.Lock()
        self.futures: dict[str, Future[Any]] = {}

    async def launch(self, message_id: str) -> str | None:
        from flows.reply_to_message import reply_to_message

        with self._lock:
            if message_id not in self.futures:
                self.futures[message_id] = self._pool.submit(reply_to_message, message_id)
        return None

    def wait(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Every launched run's result (or exception), by message id."""
        with self._lock:
            futures = dict(self.futures)
        results: dict[str, Any] = {}
        for message_id, future in futures.items():
            try:
                results[message_id] = future.result(timeout=timeout_s)
            except Exception as exc:  # reported to the caller, which asserts on it
                results[message_id] = exc
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def reply_launcher(request: Request) -> ReplyLauncher:
    """``app.state.dm_launcher`` if set, else the deployment launcher (made once per app)."""
    launcher = getattr(request.app.state, "dm_launcher", None)
    if launcher is None:
        state: ApiState = request.app.state.contentforge
        launcher = DeploymentReplyLauncher(state.settings.chat_reply_deployment_name)
        request.app.state.dm_launcher = launcher
    return launcher


def conversation_store(state: ApiState) -> ConversationStore:
    return ConversationStore(state.services.sessions)


@dataclass(frozen=True)
class Accepted:
    """``launch_failed``: the message is stored, still ``received``, but no reply run was started;
    a webhook must then not answer 200, or the platform never redelivers it."""

    inbound: Inbound
    flow_run_id: str | None
    launched: bool
    launch_failed: bool = False


async def accept_inbound(
    state: ApiState,
    launcher: ReplyLauncher,
    *,
    persona_id: str,
    platform: str,
    user_id: str,
    text: str,
    platform_message_id: str | None,
    sent_at: datetime | None = None,
) -> Accepted:
    """Store the message once and start its reply (again, if a redelivery finds it unanswered)."""
    inbound = await run_in_threadpool(
        lambda: conversation_store(state).record_inbound(
            persona_id=persona_id,
            platform=platform,
            user_id=user_id,
            text=text,
            platform_message_id=platform_message_id,
            received_at=sent_at,
        )
    )
    if inbound.message.status != "received":
        return Accepted(inbound, None, launched=False)
    try:
        run_id = await launcher.launch(inbound.message.id)
    except (PrefectUnavailable, OSError, TimeoutError) as exc:
        # Stored and still "received": the webhooks answer 503 so the platform redelivers it (a
        # redelivery of a "received" message starts its reply again); `contentforge chat list` shows it.
        log.warning("message %s stored but its reply was not started: %s", inbound.message.id, exc)
        return Accepted(inbound, None, launched=False, launch_failed=True)
    return Accepted(inbound, run_id, launched=True)
