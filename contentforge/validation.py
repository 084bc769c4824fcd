"""One validation layer for the CLI, the API and the flows: identifiers, files, settings, platforms.

Every check here is cheap and runs before anything expensive (a Prefect server, a flow run, a
model). Each raises ``InvalidInput`` (or ``InvalidSettings``) with one line that names the input
and says what is accepted, so the CLI and the API refuse the same inputs with the same message.
User text is quoted with ``repr`` and shortened, never interpreted.

No Prefect, FastAPI or Typer here: the library stays importable on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from contentforge.config import Settings, get_settings
from contentforge.domain.models import ID_PATTERN, Platform
from contentforge.errors import ContentForgeError, InvalidInput

BATCH_ID_MAX = 60
"""Piece ids are ``<batch id>-<index:03d>`` and ``pieces.id`` holds 64 characters."""
BATCH_ID_PATTERN = rf"^[a-z0-9][a-z0-9-]{{0,{BATCH_ID_MAX - 1}}}$"
"""A new batch id: lowercase letters, digits and dashes only, because it becomes part of Prefect
artifact keys (which allow nothing else), storage keys and piece ids."""
PERSONA_ID_PATTERN = ID_PATTERN
PIECE_ID_PATTERN = ID_PATTERN
STORED_BATCH_ID_PATTERN = ID_PATTERN
"""Existing records are looked up with the stored-id pattern (old batch ids may hold ``_``)."""

PERSONA_FILE_MAX_BYTES = 64 * 1024
"""A real persona file is about 1 KB; the largest persona the model accepts is about 10 KB."""
PLAN_FILE_MAX_BYTES = 5 * 1024 * 1024
"""A posting plan of 50,000 rows."""
TIER_MIX_MAX_CHARS = 200
SHOWN_CHARS = 80
"""User text echoed in a message is cut to this many characters (file names to ``SHOWN_PATH_CHARS``)."""
SHOWN_PATH_CHARS = 400

_BATCH_ID_RE = re.compile(BATCH_ID_PATTERN)
_ID_RE = re.compile(ID_PATTERN)


class InvalidSettings(ContentForgeError):
    """A ``CONTENTFORGE_*`` setting (environment or ``.env``) does not validate."""


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``value`` quoted for a message: ``repr`` (so control characters stay visible), cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_batch_id(value: str) -> str:
    """A batch id for a new or resumed batch."""
    if not isinstance(value, str) or not _BATCH_ID_RE.fullmatch(value):
        raise InvalidInput(
            f"batch id {shown(value)} is not valid: use 1 to {BATCH_ID_MAX} lowercase letters, digits "
            "and dashes, starting with a letter or digit"
        )
    return value


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidInput(
            f"{what} {shown(value)} is not valid: use 1 to 64 lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    return value


def check_persona_id(value: str) -> str:
    return _check_id(value, "persona id")


def check_piece_id(value: str) -> str:
    return _check_id(value, "piece id")


def check_stored_batch_id(value: str) -> str:
    """A batch id to look up: also the ids older versions allowed (with ``_``)."""
    return _check_id(value, "batch id")


def check_platforms(values: Iterable[str]) -> list[Platform]:
    """Platform names (case and surrounding spaces ignored); an unknown one names the valid ones."""
    chosen: list[Platform] = []
    for value in values:
        try:
            platform = Platform(value.strip().lower() if isinstance(value, str) else value)
        except ValueError:
            known = ", ".join(p.value for p in Platform)
            raise InvalidInput(f"unknown platform {shown(value)}; use one of {known}") from None
        if platform not in chosen:
            chosen.append(platform)
    return chosen


def check_text(value: str, what: str, max_chars: int) -> str:
    if len(value) > max_chars:
        raise InvalidInput(f"{what} is {len(value)} characters long; at most {max_chars} are accepted")
    return value


def read_text_file(path: Path, *, what: str, max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes``, or ``InvalidInput`` saying why not."""
    name = shown(str(path), SHOWN_PATH_CHARS)
    try:
        if not path.exists():
            raise InvalidInput(f"{what} {name} does not exist")
        if not path.is_file():
            raise InvalidInput(f"{what} {name} is not a regular file")
        size = path.stat().st_size
        if size > max_bytes:
            raise InvalidInput(f"{what} {name} has {size} bytes; at most {max_bytes} are accepted")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # the size may change between stat and read
    except OSError as exc:
        raise InvalidInput(f"{what} {name} cannot be read ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise InvalidInput(f"{what} {name} has more than {max_bytes} bytes; at most {max_bytes} are accepted")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            f"{what} {name} is not UTF-8 text (byte {exc.start}, line {line}); save it as UTF-8"
        ) from exc


def settings_problem(exc: ValidationError) -> str:
    """One line naming each variable that failed, without echoing its value (it may be a secret)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        info = Settings.model_fields.get(field)
        if info is not None and info.annotation in (int, float) and "got" not in message:
            message += f", got {shown(error.get('input'))}"  # numbers only: other values may be secrets
        problems.append(f"{prefix}{field.upper()}: {message}" if field else message)
    return "invalid setting " + "; ".join(problems)


def load_settings() -> Settings:
    """The process settings, or ``InvalidSettings`` naming the variable (environment or ``.env``)."""
    try:
        return get_settings()
    except ValidationError as exc:
        raise InvalidSettings(settings_problem(exc)) from exc
