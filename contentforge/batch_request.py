"""A batch request checked completely before anything expensive: persona, sizes, platform, batch id.

Why its own module: the CLI and the API validate here before a server starts or a model loads, and
this is all they need of a batch; ``contentforge.batch`` holds the work that follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from contentforge.config import Settings
from contentforge.db import Repository
from contentforge.domain import Persona, Platform, TierMix
from contentforge.errors import InvalidInput, UnknownPersona
from contentforge.images.factory import build_image_backend
from contentforge.images.loras import resolve_persona_lora
from contentforge.personas import load_persona_file
from contentforge.validation import (
    TIER_MIX_MAX_CHARS,
    check_batch_id,
    check_platforms,
    check_text,
    shown,
)

MAX_PIECES = 500


@dataclass(frozen=True)
class BatchRequest:
    """A validated batch request: everything a run needs, checked before any expensive work."""

    persona: Persona
    num_pieces: int
    platform: Platform
    tier_mix: TierMix
    seed: int
    include_hooks: bool = True
    safety_check: bool = True
    mode: str = "manual"
    """``manual`` (the settings' parameters, as before modes), ``auto`` (recommended LoRAs and
    parameters per piece) or ``assisted`` (the recommendation, approved or edited before generation)."""


def validate_batch_request(
    repo: Repository,
    settings: Settings,
    *,
    persona: str,
    num_pieces: int,
    platform: str,
    tier_mix: TierMix | Mapping[str, float] | str | None,
    seed: int,
    include_hooks: bool = True,
    safety_check: bool = True,
    batch_id: str | None = None,
    mode: str = "manual",
) -> BatchRequest:
    """Check every input and return the request, or raise ``InvalidInput`` naming the problem.

    Nothing is written until every check has passed: a persona named by a file is saved last, so a
    request refused for any reason leaves the database as it was. ``batch_id`` (resume or name a
    batch) must be a valid new id, or an existing batch of the same persona. ``mode``: manual, auto
    or assisted.
    """
    from contentforge.models.modes import check_batch_mode

    check_batch_mode(mode)
    if isinstance(num_pieces, bool) or not isinstance(num_pieces, int) or not 1 <= num_pieces <= MAX_PIECES:
        raise InvalidInput(f"num_pieces must be between 1 and {MAX_PIECES}, got {shown(num_pieces)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InvalidInput(f"seed must be an integer in [0, 2**32), got {shown(seed)}")
    chosen_platform = check_platforms([platform])[0]
    if isinstance(tier_mix, str):
        check_text(tier_mix, "tier mix", TIER_MIX_MAX_CHARS)
    mix = parse_tier_mix(tier_mix)
    if batch_id is not None:
        check_batch_id(batch_id)
    from_file = _is_persona_file(persona)
    found = resolve_persona(repo, persona, save=False)
    if chosen_platform not in found.platforms:
        targets = ", ".join(p.value for p in found.platforms)
        raise InvalidInput(
            f"persona {found.id!r} does not target {chosen_platform.value} (it targets {targets})"
        )
    if batch_id is not None:
        _check_batch_target(repo, batch_id, found.id, num_pieces, chosen_platform)
    if found.lora is not None:  # a file, a hub id or registry:<name> (must be registered and fit the model)
        resolve_persona_lora(found.lora, settings)
    # Builds the backend object only (the pipeline loads lazily): checks the model setting, refuses
    # pickle checkpoints, and fails here rather than after planning.
    build_image_backend(settings)
    if from_file:
        repo.upsert_persona(found)  # last: raises InvalidPersona if another persona has its name
    return BatchRequest(found, num_pieces, chosen_platform, mix, seed, include_hooks, safety_check, mode)


def _check_batch_target(
    repo: Repository, batch_id: str, persona_id: str, num_pieces: int, platform: Platform
) -> None:
    """A resumed batch belongs to this persona and platform; no piece id it would plan is another batch's.

    Why the platform: a resume on another platform would write that platform's hooks onto finished
    pieces, sending moderated (or reviewer-rejected) pieces back to moderation.
    """
    owner = repo.persona_of_batch(batch_id)
    if owner is not None and owner != persona_id:
        raise InvalidInput(
            f"batch {batch_id!r} belongs to persona {owner!r}, not {persona_id!r}; "
            "omit --batch-id to start a new batch"
        )
    planned_for = repo.platform_of_batch(batch_id)
    if planned_for is not None and planned_for != platform.value:
        raise InvalidInput(
            f"batch {batch_id!r} was produced for {planned_for}, not {platform.value}; resume it with "
            f"--platform {planned_for}, or omit --batch-id to start a new batch"
        )
    # Pieces of batches planned before piece ids used the whole batch id ("<first 16>-NNN").
    wanted = [piece_id_for(batch_id, index) for index in range(num_pieces)]
    taken = repo.batch_holding_piece_ids(wanted, other_than=batch_id)
    if taken is not None:
        raise InvalidInput(
            f"batch id {batch_id!r} would reuse piece ids of batch {taken!r}; choose another batch id"
        )


def parse_tier_mix(value: TierMix | Mapping[str, float] | str | None) -> TierMix:
    try:
        if value is None:
            return TierMix()
        if isinstance(value, TierMix):
            return value
        if isinstance(value, str):
            return TierMix.parse(value)
        return TierMix.model_validate(dict(value))
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"invalid tier mix: {_first_error(exc)}") from exc


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return str(exc)


PERSONA_FILE_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
PERSONA_REF_MAX_CHARS = 4096
"""A persona reference: an id, a name (120 characters) or a file path."""
KNOWN_SHOWN = 20
"""At most this many known persona ids are listed in an unknown-persona message."""


def _is_persona_file(persona: str) -> bool:
    return Path(persona).suffix.lower() in PERSONA_FILE_SUFFIXES


def resolve_persona(repo: Repository, persona: str, *, save: bool = True) -> Persona:
    """A persona by id or name, or from a YAML/JSON file path (saved unless ``save=False``)."""
    if not isinstance(persona, str) or not persona.strip():
        raise UnknownPersona("name a persona: its id, its name or a YAML/JSON file")
    check_text(persona, "persona reference", PERSONA_REF_MAX_CHARS)
    if _is_persona_file(persona):
        loaded = load_persona_file(Path(persona))
        if save:
            repo.upsert_persona(loaded)
        return loaded
    found = repo.get_persona(persona)
    if found is None:
        ids = [p.id for p in repo.list_personas()]
        known = ", ".join(ids[:KNOWN_SHOWN]) + (
            f" and {len(ids) - KNOWN_SHOWN} more" if len(ids) > KNOWN_SHOWN else ""
        )
        raise UnknownPersona(f"unknown persona {shown(persona)} (known: {known or 'none yet'})")
    return found


def piece_id_for(batch_id: str, index: int) -> str:
    """Deterministic, so a rerun of the same batch addresses the same pieces and storage keys.

    The whole batch id (at most ``BATCH_ID_MAX`` characters) keeps two batches' pieces apart. Batches
    planned when ids used only its first 16 characters keep their stored ids: a resumed batch reads
    them back by index (``stored_piece_ids``).
    """
    return f"{batch_id}-{index:03d}"
