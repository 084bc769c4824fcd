"""The platforms' DM webhooks: Instagram Messaging and X Account Activity (contracts in
``contentforge.chat.webhooks``).

No bearer token here: the platforms authenticate with signatures over the raw body. A missing or
wrong signature is a 403 before anything is parsed or stored. A good delivery is stored (each message
once, by its platform id) and every new message gets a ``reply-to-message`` flow run; the answer
goes back at once, so the platform never waits on a model. If a reply run cannot be started (Prefect
unreachable), the answer is a 503 so the platform redelivers; the redelivery is stored once and
starts the reply. Messages to an account no persona answers for (``CONTENTFORGE_CHAT_ACCOUNTS``) are
counted and skipped.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from contentforge.chat.webhooks import (
    META_SIGNATURE_HEADER,
    X_SIGNATURE_HEADER,
    InboundEvent,
    instagram_events,
    verify_meta_signature,
    verify_x_signature,
    x_crc_response,
    x_events,
)
from contentforge.errors import UnknownPersona
from contentforge_api.dm_launcher import ReplyLauncher, accept_inbound, reply_launcher
from contentforge_api.errors import ApiError
from contentforge_api.state import State

log = logging.getLogger(__name__)
router = APIRouter(tags=["direct messages"])
Launcher = Annotated[ReplyLauncher, Depends(reply_launcher)]


class Delivery(BaseModel):
    """What a delivery held: new messages (each gets a reply run), redeliveries, unknown accounts."""

    received: int
    duplicates: int
    unrouted: int


def _error(description: str) -> dict[str, Any]:
    """An error answer in OpenAPI; the body is always ``{"error": {"code", "message"}}``."""
    return {"description": description}


SIGNED_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("The body is not JSON."),
    403: _error("Missing or wrong signature: nothing was stored."),
    413: _error("The body is larger than CONTENTFORGE_API_MAX_BODY_BYTES."),
    503: _error(
        "The app secret is not configured, or a message was stored but its reply could not be started "
        "(Prefect unreachable): the platform redelivers it, and the redelivery starts the reply."
    ),
}


async def _deliver(state: State, launcher: ReplyLauncher, events: list[InboundEvent]) -> Delivery:
    received = duplicates = unrouted = not_started = 0
    for event in events:
        persona_id = state.settings.chat_accounts.get(f"{event.platform}:{event.account_id}")
        if persona_id is None:
            unrouted += 1
            log.warning("%s message to account %s: no persona answers it", event.platform, event.account_id)
            continue
        try:
            accepted = await accept_inbound(
                state,
                launcher,
                persona_id=persona_id,
                platform=event.platform,
                user_id=event.user_id,
                text=event.text,
                platform_message_id=event.message_id,
                sent_at=event.sent_at,
            )
        except UnknownPersona:
            unrouted += 1
            log.warning("CONTENTFORGE_CHAT_ACCOUNTS names persona %r, which does not exist", persona_id)
            continue
        if accepted.launch_failed:
            not_started += 1
        if accepted.inbound.duplicate:
            duplicates += 1
        else:
            received += 1
    if not_started:
        # After a 200 Meta and X never redeliver, and nothing else answers a "received" message.
        raise ApiError(
            503,
            f"{not_started} message(s) stored but their replies could not be started (Prefect unreachable); "
            "redeliver to start them",
        )
    return Delivery(received=received, duplicates=duplicates, unrouted=unrouted)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the webhook body is not JSON") from None


@router.get(
    "/dm/webhooks/instagram",
    response_class=PlainTextResponse,
    responses={200: {"description": "The hub.challenge, echoed."}, 403: _error("Wrong verify token.")},
)
def instagram_verify(
    state: State,
    mode: Annotated[str, Query(alias="hub.mode")] = "",
    token: Annotated[str, Query(alias="hub.verify_token")] = "",
    challenge: Annotated[str, Query(alias="hub.challenge", max_length=200)] = "",
) -> PlainTextResponse:
    """Meta's subscription handshake: echo ``hub.challenge`` when the verify token matches."""
    expected = state.settings.instagram_verify_token
    if (
        mode != "subscribe"
        or expected is None
        or not expected.get_secret_value()
        or not hmac.compare_digest(token.encode(), expected.get_secret_value().encode())
    ):
        raise ApiError(403, "hub.verify_token does not match CONTENTFORGE_INSTAGRAM_VERIFY_TOKEN")
    return PlainTextResponse(challenge)


@router.post("/dm/webhooks/instagram", response_model=Delivery, responses=SIGNED_RESPONSES)
async def instagram_webhook(request: Request, state: State, launcher: Launcher) -> Delivery:
    """A Messaging delivery, checked against ``X-Hub-Signature-256`` (the Meta app secret)."""
    secret = state.settings.instagram_app_secret
    if secret is None or not secret.get_secret_value():
        raise ApiError(503, "set CONTENTFORGE_INSTAGRAM_APP_SECRET to receive Instagram webhooks")
    body = await request.body()
    if not verify_meta_signature(secret, body, request.headers.get(META_SIGNATURE_HEADER)):
        raise ApiError(403, f"missing or wrong {META_SIGNATURE_HEADER}")
    return await _deliver(state, launcher, instagram_events(_json(body)))


@router.get(
    "/dm/webhooks/x",
    responses={200: {"description": "The CRC response_token."}, 503: _error("No consumer secret.")},
)
def x_crc(state: State, crc_token: Annotated[str, Query(min_length=1, max_length=200)]) -> dict[str, str]:
    """X's challenge-response check: ``sha256=`` + base64 HMAC-SHA256 of ``crc_token``."""
    secret = state.settings.x_consumer_secret
    if secret is None or not secret.get_secret_value():
        raise ApiError(503, "set CONTENTFORGE_X_CONSUMER_SECRET to answer X's CRC check")
    return x_crc_response(secret, crc_token)


@router.post("/dm/webhooks/x", response_model=Delivery, responses=SIGNED_RESPONSES)
async def x_webhook(request: Request, state: State, launcher: Launcher) -> Delivery:
    """An Account Activity delivery, checked against ``x-twitter-webhooks-signature``."""
    secret = state.settings.x_consumer_secret
    if secret is None or not secret.get_secret_value():
        raise ApiError(503, "set CONTENTFORGE_X_CONSUMER_SECRET to receive X webhooks")
    body = await request.body()
    if not verify_x_signature(secret, body, request.headers.get(X_SIGNATURE_HEADER)):
        raise ApiError(403, f"missing or wrong {X_SIGNATURE_HEADER}")
    return await _deliver(state, launcher, x_events(_json(body)))
