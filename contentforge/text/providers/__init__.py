"""Text providers: one protocol, Anthropic / OpenAI / OpenAI-compatible backends, an offline engine.

``build_text_provider(settings)`` returns the configured ``ProviderChain``; see the README section
"Text providers".
"""

from contentforge.text.providers.chain import ProviderChain
from contentforge.text.providers.costs import record_text_cost
from contentforge.text.providers.errors import (
    InvalidModelOutput,
    NoProviderAvailable,
    ProviderAuthError,
    ProviderCannotAnswer,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from contentforge.text.providers.factory import build_text_provider
from contentforge.text.providers.offline import OfflineEngine
from contentforge.text.providers.protocol import StructuredResult, TextProvider, TextResult

__all__ = [
    "InvalidModelOutput",
    "NoProviderAvailable",
    "OfflineEngine",
    "ProviderAuthError",
    "ProviderCannotAnswer",
    "ProviderChain",
    "ProviderError",
    "ProviderRateLimited",
    "ProviderTimeout",
    "ProviderUnavailable",
    "StructuredResult",
    "TextProvider",
    "TextResult",
    "build_text_provider",
    "record_text_cost",
]
