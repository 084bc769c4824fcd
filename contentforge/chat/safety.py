"""What the persona must not answer on its own, and what a reply must never contain.

* ``is_opt_out``: the whole message is a "stop" in one of the supported languages (en, es, fr, de,
  pt, it). Only the whole message counts, so "don't stop posting!" is not an opt-out.
* ``handoff_reason``: signs the other person may be a minor, self-harm, threats or a request for a
  human; the conversation then goes to a person. Self-harm and threats also come from the
  moderation verdict of the message (its ``self_harm`` and ``violence`` scores), so a configured
  OpenAI moderation backend widens what is caught.
* ``is_injection_attempt``: the message tries to change the rules or extract the prompt, keys or
  other people's messages. The prompt already treats the message as data; this lets the engine
  answer with a fixed refusal instead of asking a model at all.
* ``leak_in``: a reply quoting the system prompt (any run of eight of its words), a configured
  secret or an API-key shape is never sent.

Reasons name the rule, never the user's words, so they can be stored and logged.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from pydantic import SecretStr

from contentforge.domain.models import ModerationVerdict
from contentforge.redaction import MIN_SECRET_CHARS, SECRET_VALUE
from contentforge.research.injection import is_injection

OPT_OUT_PHRASES: frozenset[str] = frozenset(
    {
        # en
        "stop", "stop messaging me", "stop messages", "unsubscribe", "opt out", "optout", "cancel",
        "end", "quit", "stop all",
        # es
        "para", "parar", "basta", "detener", "alto", "no mas mensajes", "cancelar", "baja",
        # fr
        "arret", "arrete", "arreter", "stop svp", "desabonner", "desinscrire", "plus de messages",
        # de
        "stopp", "aufhoren", "aufhoeren", "abmelden", "keine nachrichten mehr", "halt",
        # pt
        "pare", "sair", "cancelar inscricao", "nao quero mais mensagens", "chega",
        # it
        "basta cosi", "smetti", "annulla iscrizione",
    }
)  # fmt: skip

_MINOR = re.compile(
    r"\b(?:i(?:'m| am)|im)\s+(?:only\s+)?(?:1[0-7]|[5-9])(?:\s*(?:yo|y/o|years?\s*old))?\b"
    r"|\b(?:1[0-7]|[5-9])\s*(?:yo|y/o|years?\s*old)\b"
    r"|\b(?:middle|junior high|elementary|high)\s+school\b|\b(?:[5-9]th|1[0-2]th)\s+grade\b"
    r"|\btengo\s+(?:1[0-7]|[5-9])\s+a[nñ]os\b|\bj'ai\s+(?:1[0-7]|[5-9])\s+ans\b"
    r"|\bich\s+bin\s+(?:1[0-7]|[5-9])\b|\btenho\s+(?:1[0-7]|[5-9])\s+anos\b",
    re.IGNORECASE,
)
_HUMAN = re.compile(
    r"\b(?:real|actual|live)\s+(?:person|human|people)\b|\b(?:talk|speak|chat)\s+(?:to|with)\s+"
    r"(?:a\s+)?(?:human|person|someone real|an? agent|the team|support)\b|\bhuman\s+please\b"
    r"|\bpersona\s+real\b|\bhablar\s+con\s+(?:una\s+)?persona\b|\bvraie\s+personne\b"
    r"|\becht(?:en|e)?\s+mensch(?:en)?\b|\bpessoa\s+real\b",
    re.IGNORECASE,
)
_SELF_HARM = re.compile(
    r"\b(?:kill|hurt|cut)\s+myself\b|\bend\s+(?:my|it)\s+(?:life|all)\b|\bwant\s+to\s+die\b"
    r"|\bsuicid\w*|\bself[- ]?harm\b|\bquiero\s+morir\b|\bme\s+suicidar\b|\bje\s+veux\s+mourir\b"
    r"|\bich\s+will\s+sterben\b|\bquero\s+morrer\b",
    re.IGNORECASE,
)
_EXTRACTION = re.compile(
    r"\b(?:system|hidden|initial|original|secret)\s+(?:prompt|instructions?|message|rules)\b"
    r"|\b(?:your|the)\s+(?:prompt|instructions|rules|configuration|config|settings)\b"
    r"|\bapi[\s_-]?keys?\b|\baccess[\s_-]?tokens?\b|\bpasswords?\b|\bsecret\s+keys?\b|\benv(?:ironment)?\s+var"
    r"|\b(?:other|another|previous|different)\s+(?:users?|people|persons?|customers?|fans?|followers?)\b"
    r"[^.!?\n]{0,60}\b(?:messages?|chats?|conversations?|dms?|said|wrote|data)\b"
    r"|\b(?:messages?|chats?|conversations?|dms?|data|details)\b[^.!?\n]{0,30}\b(?:other|another|previous|"
    r"different)\s+(?:users?|people|persons?|customers?|fans?|followers?)\b"
    r"|\b(?:developer|debug|admin|god|dan)\s+mode\b|\bjailbreak\w*\b|\bpretend\s+(?:you\s+are|to\s+be)\b"
    r"|\brepeat\s+(?:everything|all|the\s+text)\s+(?:above|before)\b",
    re.IGNORECASE,
)
PROMPT_QUOTE_WORDS = 8
THREAT_AT = 0.7
SELF_HARM_AT = 0.4
SEXUAL_REQUEST_AT = 0.4


def _folded(text: str) -> str:
    """Lower case, accents and punctuation removed, spaces collapsed: 'Arrête !' -> 'arrete'."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w\s]", " ", plain).split())


def is_opt_out(text: str) -> bool:
    return _folded(text) in OPT_OUT_PHRASES


def handoff_reason(text: str, verdict: ModerationVerdict) -> str | None:
    """Why a person must take this conversation over, or None."""
    if _SELF_HARM.search(text) or verdict.scores.get("self_harm", 0.0) >= SELF_HARM_AT:
        return "self-harm: the message may be about hurting oneself"
    if verdict.scores.get("violence", 0.0) >= THREAT_AT:
        return "threat: the message reads as a threat of violence"
    if _MINOR.search(text):
        return "possible minor: the message suggests the person is under 18"
    if _HUMAN.search(text):
        return "asked for a human"
    return None


def is_sexual_request(verdict: ModerationVerdict) -> bool:
    return verdict.scores.get("sexual", 0.0) >= SEXUAL_REQUEST_AT


def is_injection_attempt(text: str) -> bool:
    return bool(_EXTRACTION.search(text)) or is_injection(text)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def leak_in(reply: str, system: str, secrets: Iterable[SecretStr | None]) -> str | None:
    """Why ``reply`` must not be sent (it quotes the system prompt or carries a secret), or None."""
    if SECRET_VALUE.search(reply):
        return "the reply contains an API-key shape"
    values = [s.get_secret_value() for s in secrets if s is not None]
    if any(len(v) >= MIN_SECRET_CHARS and v in reply for v in values):
        return "the reply contains a configured secret"
    words = _words(system)
    grams = {tuple(words[i : i + PROMPT_QUOTE_WORDS]) for i in range(len(words) - PROMPT_QUOTE_WORDS + 1)}
    said = _words(reply)
    for i in range(len(said) - PROMPT_QUOTE_WORDS + 1):
        if tuple(said[i : i + PROMPT_QUOTE_WORDS]) in grams:
            return "the reply quotes the system prompt"
    return None
