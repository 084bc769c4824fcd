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
7. The reply row is claimed (unique per inbound message) as a lease renewed while this run lives: a
   second run for the same message stops while the claim is live, and takes it over once it
   expired (the first run died): see "Faults" below.
8. The text: a fixed refusal for injection attempts and a fixed decline for sexual requests; else
   the configured text chain with the persona's system prompt and the recent history, inside a slot
   of the ``llm`` limit; with no model reachable, the offline template (``templates.offline_reply``).
9. Guards: a reply quoting the system prompt or carrying a secret becomes the refusal.
10. Disclosure: the first automated reply of a conversation opens with the configured disclosure
    (``CONTENTFORGE_CHAT_DISCLOSURE``), which the platform limit never cuts; sent, it marks the
    conversation ``disclosed``.
11. Moderation judges the final text, exactly as it would be sent (disclosure and cut included); a
    text not judged ``safe`` becomes the decline, judged the same way. The judged text and its hash
    are stored before anything is sent.
12. Send the stored text (refused unless its hash is the judged one) through the channel and
    record the outcome, the source, the cost and the generation notes.

Faults. A run killed anywhere after its claim leaves a ``pending`` reply whose lease runs out; a
rerun of the flow or the ``resend-replies`` sweep (``resend_due``) takes it over: with no judged
text stored yet, it writes the reply from the start; with one, it sends that same text; when the
dead run had begun the platform call (``send_started_at``), the reply may have gone out, so it is
left ``failed`` for a person (notified) instead of being sent twice (the API channel, which only
stores, is settled by storing). A 429 or 5xx answer sent nothing: the reply waits (``Retry-After``,
else a growing delay) and the sweep sends it, at most ``MAX_SEND_ATTEMPTS`` calls in all; a refusal
for good (another 4xx, a missing setting), or a transport error after which the message may have
arrived, is left ``failed`` for a person with the reason. A message whose reply run was never
started (still ``received``, no reply row, older than ``UNANSWERED_AFTER``) is answered by the sweep.
"""

from __future__ import annotations

import contextlib
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
from contentforge.db.chat import (
    ChatMessage,
    Conversation,
    ConversationStore,
    ReplyClaimLost,
    ReplyNoLongerWanted,
    ReplyNotJudged,
)
from contentforge.db.leases import DEFAULT_LEASE_S, kept_alive
from contentforge.db.models import utcnow
from contentforge.domain.models import Persona, Verdict
from contentforge.errors import ContentForgeError, InvalidInput, UnknownPersona
from contentforge.faults import fault_point
from contentforge.moderation import Moderator
from contentforge.moderation.factory import build_moderator
from contentforge.publishing.protocol import PublishError, RateLimited, TransientError
from contentforge.redaction import redact_text
from contentforge.services import Services
from contentforge.text.providers import NoProviderAvailable, ProviderChain, ProviderError, build_text_provider
from contentforge.text.providers.offline import OfflineEngine

log = logging.getLogger(__name__)
T = TypeVar("T")
SlotRunner = Callable[[Callable[[], T]], T]
HISTORY_MESSAGES = 60
"""Messages read for the prompt; the token budget then decides how many go in whole."""
MAX_SEND_ATTEMPTS = 4
"""Platform calls for one reply before a temporary refusal (429, 5xx) is left for a person."""
RETRY_DELAY_S = 30.0
"""The wait before retrying a 5xx (doubled at each attempt); a 429's ``Retry-After`` wins."""
UNANSWERED_AFTER = timedelta(minutes=5)
"""An inbound still ``received`` with no reply row this long after it was sent is answered by the
sweep: its reply run was never started (Prefect unreachable at the webhook) or never ran."""


@dataclass(frozen=True)
class ReplyOutcome:
    """What happened to one inbound message."""

    inbound_id: str
    conversation_id: str
    action: str
    """``replied``, ``handed_off``, ``held``, ``opted_out``, ``ignored``, ``duplicate``, ``deferred``
    (a temporary refusal: the sweep retries), ``failed`` (left for a person) or ``lost`` (this run's
    claim was taken over)."""
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
        claim_lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        """``text``: None or an offline-only chain means the offline template answers. ``slot`` runs
        the text generation inside a slot of the ``llm`` limit (the Prefect task passes it).
        ``claim_lease_s``: how long a reply claim outlives its last renewal (renewed every third)."""
        self.settings = settings
        self.store = store
        self.persona_of = persona_of
        self.text = text
        self.moderator = moderator
        self.notifier = notifier
        self.channel_for = channel_for
        self.slot = slot
        self.clock = clock
        self.claim_lease_s = claim_lease_s
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

        # A reply claimed by an earlier run (live, dead or waiting for a retry), or None.
        earlier = self.store.reply_for(inbound_id)
        if earlier is not None and earlier.status == "pending" and not self._expired(earlier):
            return outcome("duplicate", "another run holds the claim on this message's reply")
        if inbound.status != "received":
            self._drop(earlier, f"not sent: the message was {inbound.status} meanwhile")
            return outcome("duplicate", f"already handled (status {inbound.status})")
        if conversation.opted_out or conversation.state == "closed":
            reason = "opted out" if conversation.opted_out else "conversation closed"
            self._drop(earlier, f"not sent: {reason}")
            self.store.set_inbound_status(inbound_id, "ignored")
            return outcome("ignored", reason)
        if safety.is_opt_out(inbound.text):
            self.store.opt_out(conversation.id)
            self.store.set_inbound_status(inbound_id, "ignored")
            return outcome("opted_out", "the user asked to stop; no automated message is sent again")
        if conversation.state == "human" and not _deferred_notice(earlier):
            self._drop(earlier, "not sent: a person has taken this conversation over")
            self.store.set_inbound_status(inbound_id, "held")
            return outcome("held", "a person has taken this conversation over")

        persona = self.persona_of(conversation.persona_id)
        if persona is None:
            raise UnknownPersona(
                f"conversation {conversation.id}: no persona with id {conversation.persona_id!r}"
            )
        verdict: Any = None
        if conversation.state == "human":
            # This message's own hand-off notice, deferred by a temporary refusal: it still goes out,
            # once, and nobody is notified twice.
            handoff: str | None = conversation.state_reason or "handed off"
        else:
            verdict = self.moderator.moderate(None, [inbound.text])
            handoff = safety.handoff_reason(inbound.text, verdict)
            if handoff is not None:
                conversation = self.store.set_state(conversation.id, "human", handoff)
                self.notifier.notify("handoff", conversation, handoff, message_id=inbound_id)

        if not self._inside_window(conversation, inbound):
            reason = (
                f"outside Instagram's {INSTAGRAM_WINDOW_HOURS}-hour messaging window; queued for a person"
            )
            self._drop(earlier, f"not sent: {reason}")
            self.store.set_inbound_status(inbound_id, "held")
            if handoff is None:
                self.notifier.notify("queued", conversation, reason, message_id=inbound_id)
            return outcome("held", reason)
        # A reply already claimed was counted when it was claimed; its takeover is not a new one.
        if handoff is None and earlier is None and (limited := self._rate_limited(conversation)):
            self.store.set_inbound_status(inbound_id, "held")
            return outcome("held", limited)

        claim = self.store.claim_reply(inbound_id, lease_s=self.claim_lease_s, now=self.clock())
        if claim is None:
            return outcome("duplicate", "another run already answers this message")
        token = claim.claim_token or ""

        def renew() -> bool:
            return self.store.renew_claim(
                claim.id, token, self.clock() + timedelta(seconds=self.claim_lease_s)
            )

        try:
            with kept_alive(renew, self.claim_lease_s / 3, f"reply {claim.id}"):
                sent = self._answer(persona, conversation, inbound, claim, verdict, handoff)
        except ReplyClaimLost as exc:
            return outcome("lost", str(exc))
        if handoff is not None:
            if sent.status != "pending":  # a deferred notice keeps its message open for the retry
                self.store.set_inbound_status(inbound_id, "held")
            return outcome(
                "handed_off",
                handoff,
                reply_id=sent.id,
                text=sent.text,
                source=sent.source,
                disclosed=sent.disclosure,
            )
        if sent.status == "pending":
            return outcome("deferred", sent.error or "the platform asked to wait", reply_id=sent.id)
        if sent.status != "sent":
            return outcome("failed", sent.error or "not sent", reply_id=sent.id)
        return outcome(
            "replied",
            "sent",
            reply_id=sent.id,
            text=sent.text,
            source=sent.source,
            disclosed=sent.disclosure,
            llm_slot=bool((sent.generation or {}).get("llm_slot")),
        )

    def resend_due(self, *, limit: int = 50) -> list[ReplyOutcome]:
        """Take over the replies whose claim expired (a dead run) or whose retry is due, and finish
        them; then answer the messages whose reply run never started (``UNANSWERED_AFTER``)."""
        now = self.clock()
        outcomes = [self.reply_to(inbound_id) for inbound_id in self.store.expired_replies(now, limit=limit)]
        if len(outcomes) < limit:
            unanswered = self.store.unanswered_inbounds(now - UNANSWERED_AFTER, limit=limit - len(outcomes))
            outcomes += [self.reply_to(inbound_id) for inbound_id in unanswered]
        return outcomes

    # --- claims --------------------------------------------------------------------------------

    def _expired(self, reply: ChatMessage) -> bool:
        return reply.claim_expires_at is not None and reply.claim_expires_at < self.clock()

    def _drop(self, earlier: ChatMessage | None, reason: str) -> None:
        """Finish an earlier run's unsent reply as ``failed`` when a rule now forbids sending it, so
        the sweep stops picking it up; a live claim is left to its holder."""
        if earlier is None or earlier.status != "pending" or earlier.reply_to_id is None:
            return
        claim = self.store.claim_reply(earlier.reply_to_id, lease_s=self.claim_lease_s, now=self.clock())
        if claim is None or claim.claim_token is None:
            return
        if claim.send_started_at is not None and claim.platform != "api":
            reason = f"{reason}; {self._maybe_sent(claim)}"
        with contextlib.suppress(ReplyClaimLost):  # taken over meanwhile: its new holder decides
            self.store.finish_outbound(
                claim.id, text=claim.text, status="failed", source=claim.source or "template",
                disclosure=claim.disclosure, cost_usd=claim.cost_usd, generation=claim.generation,
                error=reason, claim_token=claim.claim_token,
            )  # fmt: skip

    @staticmethod
    def _maybe_sent(claim: ChatMessage) -> str:
        started = claim.send_started_at.isoformat() if claim.send_started_at else "an earlier run"
        return (
            f"not sent again: an earlier run started sending this reply on {claim.platform} at {started} "
            "and stopped before recording the answer, so it may already have arrived; check the "
            "conversation on the platform"
        )

    def _answer(
        self,
        persona: Persona,
        conversation: Conversation,
        inbound: ChatMessage,
        claim: ChatMessage,
        verdict: Any,
        handoff: str | None,
    ) -> ChatMessage:
        """Write (or take over), judge, store and send the claimed reply; the finished row."""
        if claim.send_started_at is not None and conversation.platform != "api":
            return self._leave_for_person(conversation, claim, self._maybe_sent(claim))
        if claim.judged_sha256 is None:
            fault_point("reply-claimed")  # test-only: kill -9 between the claim and the writing
            claim = self._write_and_judge(persona, conversation, inbound, claim, verdict, handoff)
            if claim.status != "pending":
                return claim
        return self._send(conversation, claim)

    def _write_and_judge(
        self,
        persona: Persona,
        conversation: Conversation,
        inbound: ChatMessage,
        claim: ChatMessage,
        verdict: Any,
        handoff: str | None,
    ) -> ChatMessage:
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
        disclose = not conversation.disclosed
        final = self._final(persona, conversation, text, disclose)
        if not self._judged_safe(final, generation):
            generation["guard"] = f"reply moderated {generation['reply_verdict']}: declined instead"
            text, source = templates.decline_reply(persona), "template"
            final = self._final(persona, conversation, text, disclose)
            if not self._judged_safe(final, generation):
                return self._leave_for_person(
                    conversation, claim, "not sent: moderation judged neither the reply nor the decline safe"
                )
        return self.store.prepare_reply(
            claim.id, claim.claim_token or "", text=final, source=source, disclosure=disclose,
            cost_usd=float(generation.get("cost_usd") or 0.0), generation=generation,
        )  # fmt: skip

    def _final(self, persona: Persona, conversation: Conversation, text: str, disclose: bool) -> str:
        limit = message_limit(conversation.platform)
        if disclose:
            return with_disclosure(disclosure_text(self.settings, persona), text, limit)
        return fit(text, limit)

    def _judged_safe(self, final: str, generation: dict[str, Any]) -> bool:
        verdict = self.moderator.moderate(None, [final])
        generation["reply_verdict"] = verdict.verdict.value
        return verdict.verdict is Verdict.safe

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
        return text, source

    def _send(self, conversation: Conversation, claim: ChatMessage) -> ChatMessage:
        """Send the stored, judged text once; the finished row (``pending`` again when deferred)."""
        token = claim.claim_token or ""
        try:
            text = self.store.begin_send(claim.id, token, at=self.clock())
        except ReplyNotJudged as exc:
            return self._leave_for_person(conversation, claim, str(exc))
        except ReplyNoLongerWanted:  # opted out, closed or taken over while it was written
            return self.store.message(claim.id)
        try:
            platform_id = self.channel_for(conversation.platform).send(conversation.user_id, text)
        except RateLimited as exc:
            return self._retry_later(conversation, claim, exc, exc.retry_at)
        except TransientError as exc:
            if not refused_before_delivery(exc):
                return self._leave_for_person(
                    conversation, claim, f"{self._scrub(exc)}; {self._maybe_sent(claim)}"
                )
            delay = RETRY_DELAY_S * 2 ** min(claim.send_attempts, 6)
            return self._retry_later(conversation, claim, exc, self.clock() + timedelta(seconds=delay))
        except (PublishError, ContentForgeError) as exc:
            return self._leave_for_person(conversation, claim, f"refused: {self._scrub(exc)}")
        fault_point("reply-sent")  # test-only: kill -9 after the platform call, before it is recorded
        return self.store.finish_outbound(
            claim.id, text=text, status="sent", source=claim.source or "template",
            disclosure=claim.disclosure, cost_usd=claim.cost_usd, generation=claim.generation,
            platform_message_id=platform_id, claim_token=token,
        )  # fmt: skip

    def _scrub(self, exc: Exception) -> str:
        return redact_text(str(exc), self.secrets)[:500]

    def _retry_later(
        self, conversation: Conversation, claim: ChatMessage, exc: Exception, retry_at: datetime
    ) -> ChatMessage:
        attempts = claim.send_attempts + 1  # the call that was just refused
        error = self._scrub(exc)
        if attempts >= MAX_SEND_ATTEMPTS:
            return self._leave_for_person(
                conversation, claim, f"not sent after {attempts} attempts; the last answer: {error}"
            )
        log.warning(
            "conversation %s: reply %s deferred to %s: %s", conversation.id, claim.id, retry_at, error
        )
        return self.store.release_for_retry(claim.id, claim.claim_token or "", retry_at, error)

    def _leave_for_person(self, conversation: Conversation, claim: ChatMessage, reason: str) -> ChatMessage:
        """``failed`` with the reason, the inbound held, and a person notified (``conversation.queued``)."""
        log.warning("conversation %s: reply %s not sent: %s", conversation.id, claim.id, reason)
        row = self.store.finish_outbound(
            claim.id, text=claim.text, status="failed", source=claim.source or "template",
            disclosure=claim.disclosure, cost_usd=claim.cost_usd, generation=claim.generation,
            error=reason, claim_token=claim.claim_token,
        )  # fmt: skip
        self.notifier.notify(
            "queued",
            conversation,
            "an automated reply was not sent; a person should answer",
            message_id=claim.reply_to_id or claim.id,
        )
        return row


def _deferred_notice(reply: ChatMessage | None) -> bool:
    """A hand-off notice (source ``system``) judged and stored, waiting to be sent."""
    return (
        reply is not None
        and reply.status == "pending"
        and reply.source == "system"
        and reply.judged_sha256 is not None
    )


def refused_before_delivery(exc: TransientError) -> bool:
    """Whether a temporary error proves the message was not delivered: the platform answered with an
    error status (5xx, 408), or the connection was never made. A timeout or a dropped connection
    after the request left may have delivered it."""
    message = str(exc)
    return " answered HTTP " in message or "failed: Connect" in message


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
