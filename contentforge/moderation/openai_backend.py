"""Moderation with OpenAI's ``omni-moderation-latest`` (text + image) through the official SDK.

One request per piece: the piece's texts joined into one ``text`` item and its image as a PNG
``data:`` URL in one ``image_url`` item. OpenAI scores its own, finer categories; each ContentForge
category takes the maximum of its group (``CATEGORY_GROUPS``), so e.g. ``violence`` is
``max(violence, violence/graphic, illicit/violent)``.

``sexual/minors`` is handled apart from every threshold: when OpenAI flags it, or scores it at or
above ``minors_reject_at`` (0.2 by default, deliberately low), the backend reports ``sexual = 1.0``,
which is at or above any sexual reject threshold the policy accepts, so such a piece is always
rejected and never reaches review. ``illicit`` (non-violent) has no ContentForge category; a flagged
``illicit`` score is kept as evidence in the reasons only.

Retries: the SDK retries 429, 408, 409, 5xx and connection errors ``max_retries`` times with
exponential backoff, and waits exactly what ``Retry-After`` / ``retry-after-ms`` says when the server
sends it (up to 60 s). Responses are cached on disk per content hash (``cache.py``), so a rerun of
a batch sends nothing. ``base_url`` points the SDK at any server that speaks the same API; requests
go to public addresses only (``contentforge.outbound``) unless ``CONTENTFORGE_ALLOW_PRIVATE_URLS``
names the setting the URL came from.

Secrets: an upstream that quotes the key in its error body (some OpenAI-compatible servers answer
401 with "invalid key sk-…") must not carry it into logs, so the SDK's exception and its whole chain
are redacted (``contentforge.redaction.redact_exception``) before ``ModerationUnavailable`` chains it.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from contentforge.errors import ContentForgeError, InvalidInput
from contentforge.moderation.cache import ModerationCache, content_key
from contentforge.moderation.protocol import CategoryScores, ModerationInput
from contentforge.outbound import OutboundPolicy, OutboundRefused, http_package_of, refusal_in
from contentforge.redaction import redact_exception

if TYPE_CHECKING:
    from PIL import Image

    from contentforge.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "omni-moderation-latest"

CATEGORY_GROUPS: Mapping[str, tuple[str, ...]] = {
    "sexual": ("sexual",),
    "violence": ("violence", "violence/graphic", "illicit/violent"),
    "hate": ("hate", "hate/threatening"),
    "harassment": ("harassment", "harassment/threatening"),
    "self_harm": ("self-harm", "self-harm/intent", "self-harm/instructions"),
}
"""ContentForge category -> the OpenAI categories whose maximum it takes."""

MINORS = "sexual/minors"


@dataclass(frozen=True)
class OpenAIScores(CategoryScores):
    """Scores plus the categories that must reject whatever the review rules say."""

    hard_reject: tuple[str, ...] = ()


class ModerationUnavailable(ContentForgeError):
    """The remote moderation service failed after its retries; the piece stays unmoderated."""


def outbound_policy(settings: Settings) -> OutboundPolicy:
    """The policy of the setting the moderation URL comes from (its own, else the shared OpenAI one)."""
    if not settings.openai_moderation_base_url and settings.openai_base_url:
        return OutboundPolicy.for_setting("openai_base_url", settings)
    return OutboundPolicy.for_setting("openai_moderation_base_url", settings)


def image_png_bytes(image: Image.Image) -> bytes:
    """The image as PNG bytes (PIL's PNG encoder is deterministic, so the cache key is stable)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def request_input(image_png: bytes | None, texts: tuple[str, ...]) -> list[dict[str, Any]]:
    """The multi-modal ``input`` array of ``POST /moderations``."""
    items: list[dict[str, Any]] = []
    joined = "\n\n".join(t for t in texts if t)
    if joined:
        items.append({"type": "text", "text": joined})
    if image_png is not None:
        url = "data:image/png;base64," + base64.b64encode(image_png).decode("ascii")
        items.append({"type": "image_url", "image_url": {"url": url}})
    return items


class OpenAIModerationBackend:
    """Scores every ContentForge category from one ``omni-moderation`` request per piece."""

    name = "openai"

    def __init__(
        self,
        api_key: SecretStr | str | None,
        *,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        max_retries: int = 4,
        timeout_s: float = 30.0,
        cache: ModerationCache | None = None,
        minors_reject_at: float = 0.2,
        client: Any = None,
        policy: OutboundPolicy | None = None,
    ) -> None:
        """``policy`` default: ``CONTENTFORGE_OPENAI_MODERATION_BASE_URL``'s (``outbound_policy``)."""
        secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        self._secrets = [secret] if secret else []
        if client is None and not secret:
            raise InvalidInput(
                "the openai moderation backend needs an API key: set CONTENTFORGE_OPENAI_API_KEY, "
                "or remove 'openai' from CONTENTFORGE_MODERATION_BACKENDS"
            )
        if client is None:
            # imported here: local-only users never load the SDK
            from openai import DefaultHttpxClient, OpenAI

            policy = policy or OutboundPolicy.for_setting("openai_moderation_base_url")
            http = http_package_of(DefaultHttpxClient)
            client = OpenAI(
                api_key=secret,
                base_url=base_url,
                max_retries=max_retries,
                timeout=timeout_s,
                http_client=DefaultHttpxClient(transport=policy.transport(http), trust_env=False),
            )
            policy.check_static(str(client.base_url))  # the SDK may take it from OPENAI_BASE_URL
        self._client = client
        self.model = model
        self.cache = cache
        self.minors_reject_at = minors_reject_at
        self.requests_sent = 0

    def scores(self, item: ModerationInput) -> CategoryScores:
        texts = tuple(t for t in item.texts if t)
        png = None if item.image is None else image_png_bytes(item.image)
        if png is None and not texts:
            return CategoryScores.zero()
        key = content_key(self.model, png, texts)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            raw = cached["category_scores"], cached["flagged_categories"]
            result = self.scores_from_openai(*raw)
            result.reasons.append(f"{self.name}: cached response {key[:12]}")
            return result
        category_scores, flagged = self._request(png, texts)
        if self.cache is not None:
            self.cache.put(
                key,
                {"model": self.model, "category_scores": category_scores, "flagged_categories": flagged},
            )
        return self.scores_from_openai(category_scores, flagged)

    def _request(self, png: bytes | None, texts: tuple[str, ...]) -> tuple[dict[str, float], list[str]]:
        import openai

        try:
            response = self._client.moderations.create(model=self.model, input=request_input(png, texts))
        except openai.APIStatusError as exc:
            redact_exception(exc, self._secrets)
            raise ModerationUnavailable(
                f"OpenAI moderation failed with HTTP {exc.status_code} after retries "
                f"({type(exc).__name__}); the piece stays unmoderated"
            ) from exc
        except openai.APIConnectionError as exc:
            redact_exception(exc, self._secrets)
            if (refused := refusal_in(exc)) is not None:
                raise ModerationUnavailable(
                    f"OpenAI moderation not sent: {refused}; the piece stays unmoderated"
                ) from exc
            raise ModerationUnavailable(
                f"OpenAI moderation unreachable ({type(exc).__name__}); the piece stays unmoderated"
            ) from exc
        except OutboundRefused as exc:  # a refused redirect hop can escape the SDK unwrapped
            raise ModerationUnavailable(
                f"OpenAI moderation not sent: {exc}; the piece stays unmoderated"
            ) from None
        finally:
            self.requests_sent += 1
        if not response.results:
            raise ModerationUnavailable("OpenAI moderation returned no results")
        # Several results (one per input on some servers): a piece is as risky as its worst part.
        merged: dict[str, float] = {}
        flagged: set[str] = set()
        for result in response.results:
            for name, value in result.category_scores.model_dump(by_alias=True).items():
                if value is not None:
                    merged[name] = max(merged.get(name, 0.0), float(value))
            for name, value in result.categories.model_dump(by_alias=True).items():
                if value:
                    flagged.add(name)
        return merged, sorted(flagged)

    def scores_from_openai(
        self, category_scores: Mapping[str, float], flagged: list[str] | tuple[str, ...] = ()
    ) -> OpenAIScores:
        """Map OpenAI category scores onto ContentForge's (separate so the mapping is testable)."""
        scores: dict[str, float] = {}
        reasons: list[str] = []
        for category, group in CATEGORY_GROUPS.items():
            values = {name: _clamp(category_scores.get(name, 0.0)) for name in group}
            top = max(values, key=lambda name: values[name])
            scores[category] = values[top]
            if values[top] >= 0.01:
                reasons.append(f"{self.name}: {category} {values[top]:.2f} (from {top})")
        minors = _clamp(category_scores.get(MINORS, 0.0))
        hard: tuple[str, ...] = ()
        if MINORS in flagged or minors >= self.minors_reject_at:
            scores["sexual"], hard = 1.0, ("sexual",)
            reasons.append(f"{self.name}: {MINORS} {minors:.2f} -> always rejected (sexual forced to 1.00)")
        if "illicit" in flagged:
            illicit = _clamp(category_scores.get("illicit", 0.0))
            reasons.append(f"{self.name}: illicit {illicit:.2f} flagged (evidence only)")
        return OpenAIScores(scores, reasons, hard_reject=hard)


def _clamp(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return min(1.0, max(0.0, number)) if number == number else 0.0
