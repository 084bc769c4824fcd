"""Errors of the model hubs and downloads, each a one-line message saying what to do next."""

from __future__ import annotations

from contentforge.errors import ContentForgeError, InvalidInput


class HubError(ContentForgeError):
    """A hub answered with an error, or could not be reached."""


class HubUnauthorized(HubError):
    """The hub refused the request (401/403): a token is missing or wrong."""


class HubRateLimited(HubError):
    """The hub answered 429; ``retry_after`` is its wait in seconds when it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HubOffline(InvalidInput):
    """Offline mode (``HF_HUB_OFFLINE=1``) forbids contacting the hub."""


class DownloadRefused(InvalidInput):
    """A file was not downloaded or not kept: pickle format, too large, NSFW, or a wrong SHA-256."""


class HashMismatch(DownloadRefused):
    """The downloaded bytes do not have the SHA-256 the hub announced; nothing entered the registry."""


class InstallInProgress(InvalidInput):
    """Another install of the same name is running; retrying cannot help until it ends."""
