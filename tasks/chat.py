"""Answer one inbound direct message: the reply engine inside a slot of the ``llm`` limit.

The reply's text generation (a model call, or the offline template) runs inside one slot of the
global ``llm`` concurrency limit, through the same slot dispatcher as the batch's model calls
(``tasks.resources.llm_dispatcher``), so conversations and batches share the model's capacity.
Unlike ``resources.run_llm``, the slot is held with the offline engine too: a conversation's
replies are paced the same whichever engine writes them, and the benchmark can count them.

Retries are safe: the engine skips a message that is no longer ``received`` and claims its one
reply row (a lease) before writing; a retry while the claim is live finds it taken and stops.
``resend_replies`` takes over the claims whose run died and the replies whose retry is due
and answers the messages whose reply run never started (``ReplyEngine.resend_due``): each is sent
at most once, or left for a person.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_API_URL

from contentforge.chat.engine import build_reply_engine
from tasks import resources
from tasks.bootstrap import create_limit_if_absent

T = TypeVar("T")
_limits_ready: set[tuple[str, str]] = set()


def in_llm_slot(fn: Callable[[], T]) -> T:
    """Run ``fn`` inside one slot of the ``llm`` limit (created where absent)."""
    config = resources.settings()
    key = (config.llm_concurrency_limit_name, str(PREFECT_API_URL.value()))
    if key not in _limits_ready:
        create_limit_if_absent(config.llm_concurrency_limit_name, config.llm_concurrency)
        _limits_ready.add(key)
    return resources.llm_dispatcher().run(fn)


@task(
    name="answer-message",
    task_run_name="answer-{message_id}",
    retries=2,
    retry_delay_seconds=[2, 10],
    # No task timeout: the model call has its own (CONTENTFORGE_TEXT_TIMEOUT_S), the send API its
    # HTTP timeouts, and a thread-run task's timeout cannot interrupt either anyway.
    cache_policy=NO_CACHE,
    persist_result=False,
)
def answer_message(message_id: str) -> dict[str, Any]:
    """What happened to the message (replied, held, handed off, opted out...), as JSON."""
    engine = build_reply_engine(resources.settings(), resources.services(), slot=in_llm_slot)
    outcome = engine.reply_to(message_id)
    return {
        "message_id": outcome.inbound_id,
        "conversation_id": outcome.conversation_id,
        "action": outcome.action,
        "reason": outcome.reason,
        "reply_id": outcome.reply_id,
        "source": outcome.source,
        "disclosed": outcome.disclosed,
        "llm_slot": outcome.llm_slot,
    }


@task(
    name="resend-replies",
    retries=1,
    retry_delay_seconds=10,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def resend_replies(limit: int = 50) -> list[dict[str, Any]]:
    """Finish the replies left ``pending`` by a dead run or a temporary refusal, and answer the
    messages no reply run ever claimed; what happened to each."""
    engine = build_reply_engine(resources.settings(), resources.services(), slot=in_llm_slot)
    return [
        {"message_id": o.inbound_id, "action": o.action, "reason": o.reason, "reply_id": o.reply_id}
        for o in engine.resend_due(limit=limit)
    ]
