"""Build the provider chain from settings: ``CONTENTFORGE_TEXT_PROVIDERS=anthropic,openai,offline``.

Each named provider is built only when it can run; one that cannot (no key, no local URL) is
skipped with a logged reason, never silently. If nothing can run, ``NoProviderAvailable`` says
what to set.
"""

from __future__ import annotations

import logging
from typing import Any

from contentforge.config import Settings
from contentforge.outbound import OutboundPolicy
from contentforge.text.providers.chain import ProviderChain
from contentforge.text.providers.errors import NoProviderAvailable
from contentforge.text.providers.offline import OfflineEngine
from contentforge.text.providers.protocol import CallListener, TextProvider

log = logging.getLogger(__name__)

# The SDK-backed providers are imported when one is built, not with this module: importing the
# ``anthropic`` and ``openai`` SDKs costs ~3 s of CPU, and every batch flow-run process imports this
# module (measured with ``python -X importtime -c "import flows.produce_content_batch"``), while a
# chain of ``local,offline`` or ``offline`` alone never needs them.


def _build_one(name: str, settings: Settings, on_call: CallListener | None = None) -> TextProvider | str:
    """The provider, or the reason it cannot run."""
    common: dict[str, Any] = {
        "timeout_s": settings.text_timeout_s,
        "max_attempts": settings.text_max_attempts,
        "retry_base_s": settings.text_retry_base_s,
        "retry_max_s": settings.text_retry_max_s,
        "prices": settings.text_prices,
        "on_call": on_call,
    }
    if name == "anthropic":
        if settings.anthropic_api_key is None or not settings.anthropic_api_key.get_secret_value():
            return "CONTENTFORGE_ANTHROPIC_API_KEY is not set"
        from contentforge.text.providers.anthropic_provider import AnthropicProvider

        return AnthropicProvider(
            api_key=settings.anthropic_api_key,
            model=settings.anthropic_model,
            base_url=settings.anthropic_base_url,
            policy=OutboundPolicy.for_setting("anthropic_base_url", settings),
            **common,
        )
    if name == "openai":
        if settings.openai_api_key is None or not settings.openai_api_key.get_secret_value():
            return "CONTENTFORGE_OPENAI_API_KEY is not set"
        from contentforge.text.providers.openai_provider import OpenAIProvider

        return OpenAIProvider(
            api_key=settings.openai_api_key,
            model=settings.openai_model,
            base_url=settings.openai_base_url,
            policy=OutboundPolicy.for_setting("openai_base_url", settings),
            **common,
        )
    if name == "local":
        if not settings.local_llm_base_url:
            return "CONTENTFORGE_LOCAL_LLM_BASE_URL is not set"
        if not settings.local_llm_model:
            return "CONTENTFORGE_LOCAL_LLM_MODEL is not set"
        from contentforge.text.providers.openai_provider import OpenAIProvider

        return OpenAIProvider(
            name="local",
            api_key=settings.local_llm_api_key,
            model=settings.local_llm_model,
            base_url=settings.local_llm_base_url,
            policy=OutboundPolicy.for_setting("local_llm_base_url", settings),
            **common,
        )
    if name == "offline":
        return OfflineEngine()
    return f"unknown provider {name!r}"


def build_text_provider(settings: Settings, *, on_call: CallListener | None = None) -> ProviderChain:
    """The chain named by ``settings.text_providers``, skipping (and logging) those that cannot run.

    ``on_call`` is handed to every model provider, which reports each paid call to it (strategy
    steps write them to the cost ledger this way); the offline engine costs nothing and never does.
    """
    providers: list[TextProvider] = []
    skipped: list[tuple[str, str]] = []
    for name in settings.text_provider_names:
        built = _build_one(name, settings, on_call)
        if isinstance(built, str):
            log.warning("text provider %s skipped: %s", name, built)
            skipped.append((name, built))
        else:
            providers.append(built)
    if not providers:
        raise NoProviderAvailable(
            f"no text provider can run (CONTENTFORGE_TEXT_PROVIDERS={settings.text_providers}); set the "
            "missing keys or add 'offline'",
            skipped,
        )
    log.info("text providers: %s", ", ".join(p.name for p in providers))
    return ProviderChain(providers, skipped)
