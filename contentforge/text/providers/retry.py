"""Retries inside one provider: exponential backoff with jitter, or the server's ``retry-after``.

Only errors marked ``retryable`` (rate limits, timeouts, 5xx) are retried; an auth error or a
rejected request fails at once so a chain can move on without waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from contentforge.retry_after import wait_retry_after
from contentforge.text.providers.errors import ProviderError, ProviderRateLimited

log = logging.getLogger(__name__)
R = TypeVar("R")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


def call_with_retries(
    fn: Callable[[], R], *, attempts: int, base_s: float, max_s: float, what: str
) -> tuple[R, int]:
    """``fn()`` with up to ``attempts`` tries; returns its value and the number of tries used."""
    wait = wait_retry_after(
        lambda exc: exc.retry_after if isinstance(exc, ProviderRateLimited) else None,
        wait_exponential_jitter(initial=base_s, max=max_s, jitter=base_s),
        cap_s=max_s,
    )

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s failed (try %d of %d): %s; retrying in %.2fs",
            what,
            state.attempt_number,
            attempts,
            exc,
            sleep,
        )

    retrying = Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait,
        retry=retry_if_exception(_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            value = fn()
        if attempt.retry_state.outcome and not attempt.retry_state.outcome.failed:
            return value, attempt.retry_state.attempt_number
    raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover
