"""Reply to one direct message in the persona's voice: what every DM webhook starts.

The webhook (``contentforge_api/routes/dm_webhooks.py``) or ``POST /api/v1/dm/messages`` stores the
message and starts this flow (deployment ``reply-to-message`` on the cpu pool), answering the
platform at once; the reply is written here, never inside the request. One task: the reply engine
(``contentforge.chat.engine``: opt-out, hand-off, the 24-hour window, rate limits, the text chain
or offline template inside a slot of the ``llm`` limit, guards, the AI disclosure on the first
reply, send). Running it twice for one message sends one reply.

    python flows/reply_to_message.py MESSAGE_ID
"""

from __future__ import annotations

import re
import sys
from typing import Any

from prefect import flow

from tasks.chat import answer_message


@flow(name="reply-to-message", flow_run_name="reply-{message_id}", log_prints=False)
def reply_to_message(message_id: str) -> dict[str, Any]:
    """Answer the stored inbound message ``message_id``; returns what happened to it."""
    return answer_message(message_id)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not re.fullmatch(r"[0-9a-f]{32}", sys.argv[1]):
        sys.exit("usage: python flows/reply_to_message.py MESSAGE_ID (32 hex: a stored inbound message)")
    print(reply_to_message(sys.argv[1]))
