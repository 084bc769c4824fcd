"""Answer one stored inbound message: the whole reply path, in the order the rules apply.

1. Already handled (its status is not ``received``): nothing happens, so a rerun is harmless.
2. Opted out or closed: ignored. A "stop" (``safety.is_opt_out``) opts the conversation out and is
   not answered: no automated message is sent in it again.
3. ``human`` state: held for the person who took over.
4. Inbound moderation and hand-off rules (minor, self-harm, threat, asking for a human): the
   conversation becomes ``human``, a person is notified, and the user gets a short fixed notice.
5. Instagram's 24-hour window: a message older than that when its reply would go out is held for a
   person (Meta allows no standard reply any more), who is notified.
6. Rate limits per conversation and per persona (automated replies in the last hour): over the
   limit, the message is held.
7. The reply row is claimed (unique per inbound message): a second run for the same message stops.
8. The text: a fixed refusal for injection attempts and a fixed decline for sexual requests; else
   the configured text chain with the persona's system prompt and the recent history, inside a slot
   of the ``llm`` limit; with no model reachable, the offline template (``templates.offline_reply``).
9. Guards: a reply quoting the system prompt or carrying a secret becomes the refusal; a reply the
   moderation policy does not judge ``safe`` becomes the decline.
10. Disclosure: the first automated reply of a conversation opens with the configured disclosure
    (``CONTENTFORGE_CHAT_DISCLOSURE``), which the platform limit never cuts; sent, it marks the
    conversation ``disclosed``.
11. Send through the channel and record the outcome, the source, the cost and the generation notes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from contentforge.chat import safety, templates
from contentforge.chat.channels import INSTAGRAM_WINDOW_HOURS, Channel, build_channel
from contentforge.chat.limits import fit, message_limit, with_disclosure
from contentforge.chat.notify import Notifier, WebhookConversationNotifier
from contentforge.chat.prompt import Turn, reply_prompt, system_prompt
from contentforge.config import Settings
from contentforge.db.chat import ChatMessage, Conversation, ConversationStore
from contentforge.db.models import utcnow
from contentforge.domain.models import Persona, Verdict
from contentforge.errors import ContentForgeError, InvalidInput, UnknownPersona
from contentforge.moderation import Moderator
from contentforge.moderation.factory import build_moderator
from contentforge.publishing.protocol import PublishError
from contentforge.redaction import redact_text
from contentforge.services import Services
from contentforge.text.providers import NoProviderAvailable, ProviderChain, ProviderError, build_text_provider
from contentforge.text.providers.offline import OfflineEngine

log = logging.getLogger(__name__)
T = TypeVar("T")
SlotRunner = Callable[[Callable[[], T]], T]
HISTORY_MESSAGES = 60
"""Messages read for the prompt; the token budget then decides how many go in whole."""


@dataclass(frozen=True)
class ReplyOutcome:
    """What happened to one inbound message."""

    inbound_id: str
    conversation_id: str
    action: str
    """``replied``, ``handed_off``, ``held``, ``opted_out``, ``ignored``, ``duplicate`` or ``failed``."""
    reason: str
    reply_id: str | None = None
    text: str | None = None
    source: str | None = None
    disclosed: bool = False
    llm_slot: bool = False


def settings_secrets(settings: Settings) -> list[SecretStr]:
    """Every secret the settings hold: none of them may ever appear in a reply."""
    return [value for value in vars(settings).values() if isinstance(value, SecretStr)]


def disclosure_text(settings: Settings, persona: Persona) -> str:
    return settings.chat_disclosure.replace("{persona}", persona.name)


class ReplyEngine:
    def __init__(
        self,
        *,
        settings: Settings,
        store: ConversationStore,
        persona_of: Callable[[str], Persona | None],
        text: ProviderChain | None,
        moderator: Moderator,
        notifier: Notifier,
        channel_for: Callable[[str], Channel],
        slot: SlotRunner[Any] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``text``: None or an offline-only chain means the offline template answers. ``slot`` runs
        the text generation inside a slot of the ``llm`` limit (the Prefect task passes it)."""
        self.settings = settings
        self.store = store
        self.persona_of = persona_of
        self.text = text
        self.moderator = moderator
        self.notifier = notifier
        self.channel_for = channel_for
        self.slot = slot
        self.clock = clock
        self.secrets = settings_secrets(settings)

    # --- the path ------------------------------------------------------------------------------

    def reply_to(self, inbound_id: str) -> ReplyOutcome:
        inbound = self.store.message(inbound_id)
        if inbound.direction != "inbound":
            raise InvalidInput(f"message {inbound_id!r} is not an inbound message")
        conversation = self.store.conversation(inbound.conversation_id)

        def outcome(action: str, reason: str, **fields: Any) -> ReplyOutcome:
            log.info("message %s of conversation %s: %s (%s)", inbound_id, conversation.id, action, reason)
            return ReplyOutcome(inbound_id, conversation.id, action, reason, **fields)

        if inbound.status != "received":
            return outcome("duplicate", f"already handled (status {inbound.status})")
        if conversation.opted_out or conversation.state == "closed":
            self.store.set_inbound_status(inbound_id, "ignored")
            return outcome("ignored", "opted out" if conversation.opted_out else "conversation closed")
        if safety.is_opt_out(inbound.text):
            self.store.opt_out(conversation.id)
            self.store.set_inbound_status(inbound_id, "ignored")
            return outcome("opted_out", "the user asked to stop; no automated message is sent again")
        if conversation.state == "human":
            self.store.set_inbound_status(inbound_id, "held")
            return outcome("held", "a person has taken this conversation over")

        persona = self.persona_of(conversation.persona_id)
        if persona is None:
            raise UnknownPersona(
                f"conversation {conversation.id}: no persona with id {conversation.persona_id!r}"
            )
        verdict = self.moderator.moderate(None, [inbound.text])
        handoff = safety.handoff_reason(inbound.text, verdict)
        if handoff is not None:
            conversation = self.store.set_state(conversation.id, "human", handoff)
            self.notifier.notify("handoff", conversation, handoff)

        if not self._inside_window(conversation, inbound):
            self.store.set_inbound_status(inbound_id, "held")
            reason = (
                f"outside Instagram's {INSTAGRAM_WINDOW_HOURS}-hour messaging window; queued for a person"
            )
            if handoff is None:
                self.notifier.notify("queued", conversation, reason)
            return outcome("held", reason)
        if handoff is None and (limited := self._rate_limited(conversation)):
            self.store.set_inbound_status(inbound_id, "held")
            return outcome("held", limited)

        claim = self.store.claim_reply(inbound_id)
        if claim is None:
            return outcome("duplicate", "another run already answers this message")

        generation: dict[str, Any] = {"inbound_verdict": verdict.verdict.value}
        if handoff is not None:
            text, source = templates.handoff_notice(handoff), "system"
        elif safety.is_sexual_request(verdict) or verdict.verdict is Verdict.rejected:
            text, source = templates.decline_reply(persona), "template"
            generation["rule"] = "declined: the message asks for content the persona never writes"
        elif safety.is_injection_attempt(inbound.text):
            text, source = templates.refusal_reply(persona), "template"
            generation["rule"] = "refused: the message tries to change the rules or extract data"
        else:
            text, source, generation = self._generate(persona, conversation, inbound, generation)
            text, source = self._guarded(persona, conversation, text, source, generation)

        sent = self._send(conversation, persona, claim, text, source, generation)
        if handoff is not None:
            self.store.set_inbound_status(inbound_id, "held")
            return outcome(
                "handed_off",
                handoff,
                reply_id=sent.id,
                text=sent.text,
                source=source,
                disclosed=sent.disclosure,
            )
        if sent.status != "sent":
            return outcome("failed", sent.error or "not sent", reply_id=sent.id)
        return outcome(
            "replied",
            "sent",
            reply_id=sent.id,
            text=sent.text,
            source=source,
            disclosed=sent.disclosure,
            llm_slot=bool(generation.get("llm_slot")),
        )

    # --- steps ---------------------------------------------------------------------------------

    def _inside_window(self, conversation: Conversation, inbound: ChatMessage) -> bool:
        if conversation.platform != "instagram":
            return True
        last = conversation.last_inbound_at or inbound.created_at
        return self.clock() - last <= timedelta(hours=INSTAGRAM_WINDOW_HOURS)

    def _rate_limited(self, conversation: Conversation) -> str | None:
        since = self.clock() - timedelta(hours=1)
        per_conversation = self.store.automated_replies_since(since, conversation_id=conversation.id)
        if per_conversation >= self.settings.chat_replies_per_conversation_hour:
            return (
                f"rate limit: {per_conversation} automated replies in this conversation in the last hour "
                f"(CONTENTFORGE_CHAT_REPLIES_PER_CONVERSATION_HOUR={self.settings.chat_replies_per_conversation_hour})"
            )
        per_persona = self.store.automated_replies_since(since, persona_id=conversation.persona_id)
        if per_persona >= self.settings.chat_replies_per_persona_hour:
            return (
                f"rate limit: {per_persona} automated replies by this persona in the last hour "
                f"(CONTENTFORGE_CHAT_REPLIES_PER_PERSONA_HOUR={self.settings.chat_replies_per_persona_hour})"
            )
        return None

    def _history(self, conversation: Conversation, inbound: ChatMessage) -> list[Turn]:
        turns: list[Turn] = []
        for message in self.store.messages(conversation.id, limit=HISTORY_MESSAGES):
            if message.id == inbound.id or message.created_at > inbound.created_at:
                continue
            if message.direction == "outbound" and message.status != "sent":
                continue
            turns.append(Turn("user" if message.direction == "inbound" else "persona", message.text))
        return turns

    def _generate(
        self, persona: Persona, conversation: Conversation, inbound: ChatMessage, generation: dict[str, Any]
    ) -> tuple[str, str, dict[str, Any]]:
        """The reply text, inside a slot of the ``llm`` limit when the engine has one; the notes say
        when the writing ran (``generated_from``/``generated_to``, epoch seconds) and in a slot or not."""

        def clocked() -> tuple[str, str, dict[str, Any]]:
            started = time.time()
            text, source, notes = self._write(persona, conversation, inbound)
            return (
                text,
                source,
                notes | {"generated_from": round(started, 4), "generated_to": round(time.time(), 4)},
            )

        if self.slot is not None:
            text, source, notes = self.slot(clocked)
            notes["llm_slot"] = True
        else:
            text, source, notes = clocked()
        return text, source, generation | notes

    def _write(
        self, persona: Persona, conversation: Conversation, inbound: ChatMessage
    ) -> tuple[str, str, dict[str, Any]]:
        models = [p for p in self.text.providers if not isinstance(p, OfflineEngine)] if self.text else []
        if not models:
            return templates.offline_reply(persona, inbound.text), "template", {"provider": "offline"}
        system = system_prompt(persona, conversation.platform)
        prompt = reply_prompt(
            persona, self._history(conversation, inbound), inbound.text, self.settings.chat_history_tokens
        )
        try:
            result = ProviderChain(models).generate(
                prompt,
                system=system,
                max_tokens=self.settings.chat_reply_max_tokens,
                prompt_version="chat.v1",
            )
        except (NoProviderAvailable, ProviderError) as exc:
            reason = redact_text(str(exc), self.secrets)[:300]
            log.warning(
                "conversation %s: no model answered, offline template used: %s", conversation.id, reason
            )
            return (
                templates.offline_reply(persona, inbound.text),
                "template",
                {"provider": "offline", "fallback": reason},
            )
        notes = {
            "provider": result.provider,
            "model": result.model,
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "cost_usd": result.cost_usd,
            "latency_s": round(result.latency_s, 4),
            "fallbacks": list(result.fallbacks),
        }
        return result.text.strip(), result.provider, notes

    def _guarded(
        self, persona: Persona, conversation: Conversation, text: str, source: str, generation: dict[str, Any]
    ) -> tuple[str, str]:
        if not text:
            generation["guard"] = "the model answered nothing; offline template used"
            return templates.offline_reply(persona, ""), "template"
        leak = safety.leak_in(text, system_prompt(persona, conversation.platform), self.secrets)
        if leak is not None:
            generation["guard"] = leak
            return templates.refusal_reply(persona), "template"
        verdict = self.moderator.moderate(None, [text])
        generation["reply_verdict"] = verdict.verdict.value
        if verdict.verdict is not Verdict.safe:
            generation["guard"] = f"reply moderated {verdict.verdict.value}: declined instead"
            return templates.decline_reply(persona), "template"
        return text, source

    def _send(
        self,
        conversation: Conversation,
        persona: Persona,
        claim: ChatMessage,
        text: str,
        source: str,
        generation: dict[str, Any],
    ) -> ChatMessage:
        limit = message_limit(conversation.platform)
        disclose = not conversation.disclosed
        final = (
            with_disclosure(disclosure_text(self.settings, persona), text, limit)
            if disclose
            else fit(text, limit)
        )
        cost = float(generation.get("cost_usd") or 0.0)
        try:
            platform_id = self.channel_for(conversation.platform).send(conversation.user_id, final)
        except (PublishError, ContentForgeError) as exc:
            error = redact_text(str(exc), self.secrets)[:500]
            log.warning("conversation %s: reply not sent: %s", conversation.id, error)
            return self.store.finish_outbound(
                claim.id, text=final, status="failed", source=source, disclosure=disclose, cost_usd=cost,
                generation=generation, error=error,
            )  # fmt: skip
        return self.store.finish_outbound(
            claim.id, text=final, status="sent", source=source, disclosure=disclose, cost_usd=cost,
            generation=generation, platform_message_id=platform_id,
        )  # fmt: skip


def build_reply_engine(
    settings: Settings,
    services: Services,
    *,
    slot: SlotRunner[Any] | None = None,
    http_client: httpx.Client | None = None,
) -> ReplyEngine:
    """The engine on the configured text chain, moderation, notify webhook and channels.

    ``http_client``: one client for the platform channels (tests point it at local servers); by
    default each channel builds its own under the outbound URL policy of its setting.
    """
    try:
        chain: ProviderChain | None = build_text_provider(settings)
    except NoProviderAvailable as exc:
        log.warning("no text provider can run; conversations use the offline template: %s", exc)
        chain = None
    return ReplyEngine(
        settings=settings,
        store=ConversationStore(services.sessions),
        persona_of=services.repository.get_persona,
        text=chain,
        moderator=build_moderator(settings),
        notifier=WebhookConversationNotifier(settings),
        channel_for=lambda platform: build_channel(platform, settings, http_client),
        slot=slot,
    )
