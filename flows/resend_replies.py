"""Finish the persona replies a dead run left behind, or a temporary refusal deferred: each sent once.

A reply run claims its reply with a lease. If the run dies (a worker killed, a machine lost) the
lease runs out and this flow takes the reply over: written from the start when nothing was judged
yet, the judged text sent when it was, and left ``failed`` for a person when the dead run had
already begun the platform call (it may have arrived). Replies the platform refused for now (429
with ``Retry-After``, 5xx) are sent once their wait is over, a bounded number of times
(``contentforge.chat.engine``). Messages whose reply run never started (stored while Prefect was
unreachable; still ``received`` with no reply after 5 minutes) are answered here too. Deployment
``resend-replies`` runs it every minute on the cpu pool;
``contentforge chat resend`` does the same from a terminal.

    python flows/resend_replies.py [LIMIT]
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow

from tasks.chat import resend_replies as resend_replies_task


@flow(name="resend-replies", log_prints=False)
def resend_replies(limit: int = 50) -> list[dict[str, Any]]:
    """Take over up to ``limit`` expired or due replies; what happened to each."""
    if not 1 <= limit <= 500:
        raise ValueError(f"limit must be 1-500, not {limit}")
    return resend_replies_task(limit)


if __name__ == "__main__":
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and not sys.argv[1].isdigit()):
        sys.exit("usage: python flows/resend_replies.py [LIMIT] (a whole number, 1-500)")
    print(resend_replies(int(sys.argv[1]) if len(sys.argv) == 2 else 50))
