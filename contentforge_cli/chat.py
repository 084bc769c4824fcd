"""``contentforge chat``: persona conversations as a person reviews them (docs/chat.md).

``list`` and ``show`` read; ``takeover`` silences the persona in a conversation, ``reply`` sends a
person's message through the conversation's channel (only once taken over), ``handback`` lets the
persona answer again (an opt-out stays), ``resend`` finishes the replies a dead run left or a
temporary refusal deferred (what the ``resend-replies`` deployment does every minute). Users' words
are printed literally, never as markup.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from contentforge_cli import context
from contentforge_cli.context import console

if TYPE_CHECKING:
    from contentforge.db.chat import ConversationStore

app = typer.Typer(
    help="Persona conversations: list, show, take over, reply, hand back, resend.", no_args_is_help=True
)
CONVERSATION_ID = re.compile(r"^[0-9a-f]{32}$")
ConversationArg = Annotated[str, typer.Argument(help="Conversation id (32 hex characters).")]
WhoOption = Annotated[str, typer.Option("--as", help="Who acts (recorded with the change).")]


def _store() -> ConversationStore:
    from contentforge.db.chat import ConversationStore

    return ConversationStore(context.services().sessions)


def _checked(conversation_id: str) -> str:
    if not CONVERSATION_ID.fullmatch(conversation_id):
        context.fail(f"not a conversation id: {conversation_id!r} (32 hex characters)")
    return conversation_id


@app.command("list")
def chat_list(
    persona: Annotated[str | None, typer.Option(help="Persona id.")] = None,
    state: Annotated[str | None, typer.Option(help="auto, human or closed.")] = None,
    platform: Annotated[str | None, typer.Option(help="instagram, x or api.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Conversations, most recently active first; --state human lists what waits for a person."""
    if state is not None and state not in ("auto", "human", "closed"):
        context.fail(f"--state must be auto, human or closed, not {state!r}")
    if platform is not None and platform not in ("instagram", "x", "api"):
        context.fail(f"--platform must be instagram, x or api, not {platform!r}")
    conversations = _store().conversations(persona_id=persona, state=state, platform=platform, limit=limit)
    table = Table(
        "conversation", "persona", "platform", "user", "state", "opted out", "disclosed", "why", "active"
    )
    for c in conversations:
        table.add_row(
            c.id,
            c.persona_id,
            c.platform,
            c.user_id,
            c.state,
            "yes" if c.opted_out else "",
            "yes" if c.disclosed else "no",
            c.state_reason or "",
            c.updated_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
    console.print(f"{len(conversations)} conversation(s)")


@app.command("show")
def chat_show(conversation: ConversationArg) -> None:
    """Every message of a conversation, oldest first."""
    store = _store()
    c = store.conversation(_checked(conversation))
    console.print(
        f"{c.id}  persona {c.persona_id}  {c.platform} user {c.user_id}  state {c.state}"
        f"{'  opted out' if c.opted_out else ''}  disclosed: {'yes' if c.disclosed else 'no'}"
    )
    table = Table("at", "who", "status", "source", "text", "why not sent")
    for m in store.messages(c.id):
        who = "user" if m.direction == "inbound" else (m.author or "persona")
        why = (m.error or "") if m.status in ("failed", "pending") else ""
        table.add_row(m.created_at.strftime("%Y-%m-%d %H:%M:%S"), who, m.status, m.source or "", m.text, why)
    console.print(table)


@app.command("takeover")
def chat_takeover(conversation: ConversationArg, who: WhoOption) -> None:
    """A person takes the conversation over: the persona stays silent until handback."""
    from contentforge.chat.review import take_over

    c = take_over(_store(), _checked(conversation), who)
    console.print(f"{c.id}: taken over by {who}")


@app.command("handback")
def chat_handback(conversation: ConversationArg, who: WhoOption) -> None:
    """The persona answers again (never after the user said stop)."""
    from contentforge.chat.review import hand_back

    c = hand_back(_store(), _checked(conversation), who)
    note = " (the user opted out: the persona stays silent)" if c.opted_out else ""
    console.print(f"{c.id}: handed back to the persona by {who}{note}")


@app.command("reply")
def chat_reply(
    conversation: ConversationArg,
    text: Annotated[str, typer.Argument(help="What to send.")],
    who: WhoOption,
) -> None:
    """Send a person's reply through the conversation's channel (take it over first)."""
    from contentforge.chat.channels import build_channel
    from contentforge.chat.review import send_human_reply

    store = _store()
    c = store.conversation(_checked(conversation))
    channel = build_channel(c.platform, context.settings())
    message = send_human_reply(store, channel, c.id, text, who)
    if message.status != "sent":
        context.fail(f"not sent: {message.error}")
    console.print(f"{c.id}: sent by {who}")


@app.command("resend")
def chat_resend(
    limit: Annotated[int, typer.Option(min=1, max=500, help="Replies to finish at most.")] = 50,
) -> None:
    """Finish the replies whose run died after claiming them, or whose retry is due, each sent once.

    Runs the reply engine in this process (no ``llm`` slot: for a person at a terminal; the
    ``resend-replies`` deployment is the scheduled way). A reply whose sending had begun is not
    sent again: it is listed as failed, for a person to check on the platform.
    """
    from contentforge.chat.engine import build_reply_engine

    engine = build_reply_engine(context.settings(), context.services())
    outcomes = engine.resend_due(limit=limit)
    for outcome in outcomes:
        console.print(f"{outcome.inbound_id}: {outcome.action} ({outcome.reason})", markup=False)
    console.print(f"{len(outcomes)} reply(ies) taken over")
