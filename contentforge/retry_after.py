"""Reading a server's ``Retry-After`` header, for every client that honours one.

Used by the text providers, the Replicate backend and the publishers: each talks to a different API,
but all of them answer 429/503 with the same header, either a number of seconds or an HTTP date.
``wait_retry_after`` is the tenacity wait strategy the retrying clients share: the server's wait when
it gave one, the client's own backoff otherwise.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState
from tenacity.wait import wait_base


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds to wait (a number or an HTTP date); None when absent or unreadable.

    A date in the past means "now" (0.0), never a negative wait.
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class wait_retry_after(wait_base):  # lower case like tenacity's own wait_* strategies
    """Wait what the server asked (``retry_after(exc)``, seconds) or, when it asked nothing, ``fallback``.

    ``jitter_s`` adds up to that many random seconds to the server's wait, so concurrent clients told
    the same ``Retry-After`` do not all come back at once; ``cap_s`` bounds it (None: uncapped).
    """

    def __init__(
        self,
        retry_after: Callable[[BaseException], float | None],
        fallback: wait_base,
        *,
        jitter_s: float = 0.0,
        cap_s: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        self.fallback = fallback
        self.jitter_s = jitter_s
        self.cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        asked = self.retry_after(exc) if exc is not None else None
        if asked is None:
            return self.fallback(retry_state)
        wait = max(0.0, asked) + random.uniform(0.0, self.jitter_s)
        return wait if self.cap_s is None else min(wait, self.cap_s)


class wait_exponential_equal_jitter(wait_base):
    """``initial * 2**(n-1)`` capped at ``max_s``, times a random factor in [0.5, 1] ("equal jitter"):
    spread out, yet never less than half the exponential step."""

    def __init__(self, initial: float, max_s: float) -> None:
        self.initial = initial
        self.max_s = max_s

    def __call__(self, retry_state: RetryCallState) -> float:
        step = min(self.max_s, self.initial * 2.0 ** (retry_state.attempt_number - 1))
        return step * random.uniform(0.5, 1.0)
