"""Reading a server's ``Retry-After`` header, for every client that honours one.

Used by the text providers, the Replicate backend and the publishers: each talks to a different API,
but all of them answer 429/503 with the same header, either a number of seconds or an HTTP date.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime


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
