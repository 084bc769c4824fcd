"""The fixed replies: the offline engine's honest template, refusals and hand-off notices.

The offline template is what a persona says when no model is configured or reachable. It must be
honest: it never pretends to have understood the message, never states a fact about the user or
the world, never promises anything; it says it cannot answer in detail and names the persona's own
interests (from the persona, the one thing it does know).
"""

from __future__ import annotations

from contentforge.domain.models import Persona


def _interests(persona: Persona) -> str:
    interests = persona.interests[:2]
    return " and ".join(interests)


def offline_reply(persona: Persona, message: str) -> str:
    if message.strip().endswith("?"):
        return (
            f"Thanks for asking! This is an automatic reply from {persona.name}: I can't answer that "
            f"properly right now. Always happy to talk about {_interests(persona)}."
        )
    return (
        f"Thanks for your message! This is an automatic reply from {persona.name}: I can't reply in "
        f"detail right now. Always happy to talk about {_interests(persona)}."
    )


def decline_reply(persona: Persona) -> str:
    """For a request for sexual content, or a reply moderation refused."""
    return f"I keep things friendly here, so I'll pass on that. Want to talk about {_interests(persona)}?"


def refusal_reply(persona: Persona) -> str:
    """For a message that tries to change the rules or extract the setup, keys or others' messages."""
    return (
        "I can't share how I'm set up, any keys, or anything about other people's messages. "
        f"Happy to chat about {_interests(persona)} though!"
    )


HANDOFF_NOTICES: dict[str, str] = {
    "self-harm": "I've asked a person from the team to read this conversation. If you are in danger or "
    "thinking about hurting yourself, please call your local emergency number or a crisis line now.",
    "threat": "I've passed this conversation to a person from the team.",
    "possible minor": "I've passed this conversation to a person from the team.",
    "asked for a human": "Sure: I've asked a person from the team to pick this conversation up here.",
}


def handoff_notice(reason: str) -> str:
    return HANDOFF_NOTICES.get(reason.split(":", 1)[0], HANDOFF_NOTICES["threat"])
