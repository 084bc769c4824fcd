"""Typed errors that say what the user must do next.

Every error raised for bad input derives from ``ContentForgeError`` and has a one-line message
naming the problem, so the CLI can print it without a traceback.
"""

from __future__ import annotations

from datetime import datetime


class ContentForgeError(Exception):
    """Base class for errors a user can act on."""


class InvalidInput(ContentForgeError, ValueError):
    """A request was rejected before any expensive work started."""


class UnknownPersona(InvalidInput):
    """No persona with the given id or name exists."""


class InvalidPersona(InvalidInput):
    """A persona file or record does not validate."""


class InvalidLora(InvalidInput):
    """A LoRA file is missing, unreadable, not safetensors, or does not fit the model."""


class UnsafeCheckpoint(InvalidInput):
    """A pickle checkpoint was refused (set CONTENTFORGE_ALLOW_PICKLE=1 to opt in)."""


class GenerationFailed(ContentForgeError):
    """One image could not be generated; the piece is recorded as failed."""


class BatchBusy(InvalidInput):
    """Another runner holds the batch's lease; the message names it and when its lease ends."""

    @classmethod
    def held(cls, batch_id: str, holder: str | None, until: datetime | None) -> BatchBusy:
        """The one refusal the repository, the CLI and the API give a second runner."""
        left = "" if until is None else f" (its lease runs until {until:%H:%M:%S} UTC unless renewed)"
        return cls(
            f"batch {batch_id} is already being run by {holder}{left}; wait for it to finish, or ask to "
            "wait (--wait SECONDS), then run it again to resume"
        )
