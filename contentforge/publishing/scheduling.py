"""Posting slots: which piece goes out when, per persona and platform.

* ``parse_slot_times("09:00,13:00,19:00")``: daily times, validated.
* ``assign_slots``: deterministic assignment of pieces to the next free slots in the persona's
  timezone, never more than ``daily_limit`` posts per local day, skipping slots already taken.
* ``parse_plan_csv``: a hand-made plan (``piece_id,platform,when``), ``when`` either ISO 8601 with
  an offset or a local date-time in the persona's timezone; every bad row is reported by number.
* ``schedule_batch``: the ready pieces of a batch onto the next free slots of each platform.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from contentforge.db.models import BatchORM, PersonaORM, PieceORM
from contentforge.domain.models import Persona, Platform
from contentforge.errors import InvalidInput
from contentforge.publishing.ledger import PublicationLedger, ScheduleResult

MAX_DAYS_AHEAD = 366


def parse_slot_times(text: str) -> list[time]:
    """``"09:00,13:00"`` → sorted, distinct times; a bad entry raises ``InvalidInput`` naming it."""
    slots: set[time] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            hours, minutes = part.split(":")
            slots.add(time(int(hours), int(minutes)))
        except ValueError:
            raise InvalidInput(f"posting slot {part!r} is not HH:MM (e.g. 09:00,13:00,19:00)") from None
    if not slots:
        raise InvalidInput("no posting slots given (e.g. 09:00,13:00,19:00)")
    return sorted(slots)


def _local_day_slots(day: date, slots: Sequence[time], zone: ZoneInfo) -> list[datetime]:
    """The day's slots as UTC instants (a time skipped by a DST change is moved forward by the gap)."""
    instants = []
    for slot in slots:
        local = datetime.combine(day, slot, tzinfo=zone)
        instants.append(local.astimezone(UTC))
    return sorted(set(instants))


def assign_slots(
    items: Sequence[str],
    *,
    timezone: str,
    slot_times: Sequence[time],
    daily_limit: int,
    start: datetime,
    taken: Iterable[datetime] = (),
) -> list[tuple[str, datetime]]:
    """Give each item (in order) the earliest free slot at or after ``start``; times are UTC.

    A slot is free when no taken time falls on it and its local day has fewer than ``daily_limit``
    posts (taken ones included). Same input, same output.
    """
    if start.tzinfo is None:
        raise InvalidInput(f"start must be timezone-aware, got {start.isoformat()}")
    if daily_limit < 1:
        raise InvalidInput(f"daily limit must be >= 1, got {daily_limit}")
    zone = ZoneInfo(timezone)
    taken_set = {t.astimezone(UTC).replace(second=0, microsecond=0) for t in taken}
    per_day = Counter(t.astimezone(zone).date() for t in taken_set)
    assigned: list[tuple[str, datetime]] = []
    pending = list(items)
    day = start.astimezone(zone).date()
    last_day = day + timedelta(days=MAX_DAYS_AHEAD)
    while pending and day <= last_day:
        for instant in _local_day_slots(day, slot_times, zone):
            if not pending or per_day[day] >= daily_limit:
                break
            if instant < start or instant in taken_set:
                continue
            assigned.append((pending.pop(0), instant))
            taken_set.add(instant)
            per_day[day] += 1
        day += timedelta(days=1)
    if pending:
        raise InvalidInput(f"{len(pending)} pieces do not fit in the next {MAX_DAYS_AHEAD} days of slots")
    return assigned


@dataclass(frozen=True)
class PlanRow:
    row: int
    piece_id: str
    platform: str
    when: datetime


def parse_plan_csv(text: str, timezone_for: Callable[[str], str | None]) -> list[PlanRow]:
    """Parse a posting plan with columns ``piece_id,platform,when``.

    ``timezone_for(piece_id)`` gives the persona's timezone (``None``: unknown piece). Every
    problem is collected and raised once as ``InvalidInput`` with its row number (header = row 1).
    """
    reader = csv.DictReader(io.StringIO(text))
    missing = {"piece_id", "platform", "when"} - set(reader.fieldnames or [])
    if missing:
        raise InvalidInput(f"posting plan lacks columns {sorted(missing)} (need piece_id,platform,when)")
    rows: list[PlanRow] = []
    problems: list[str] = []
    for number, record in enumerate(reader, start=2):
        piece_id = (record.get("piece_id") or "").strip()
        platform = (record.get("platform") or "").strip().lower()
        when_text = (record.get("when") or "").strip()
        if not piece_id:
            problems.append(f"row {number}: piece_id is empty")
            continue
        if platform not in {p.value for p in Platform}:
            problems.append(f"row {number}: unknown platform {platform!r}")
            continue
        zone_name = timezone_for(piece_id)
        if zone_name is None:
            problems.append(f"row {number}: unknown piece {piece_id!r}")
            continue
        try:
            when = datetime.fromisoformat(when_text)
        except ValueError:
            problems.append(f"row {number}: when {when_text!r} is not ISO 8601 (e.g. 2026-03-01T09:00)")
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=ZoneInfo(zone_name))
        rows.append(PlanRow(number, piece_id, platform, when.astimezone(UTC)))
    if problems:
        raise InvalidInput("posting plan has errors: " + "; ".join(problems))
    return rows


@dataclass
class BatchSchedule:
    batch_id: str
    result: ScheduleResult = field(default_factory=ScheduleResult)
    slots: dict[str, list[tuple[str, datetime]]] = field(default_factory=dict)


def schedule_batch(
    ledger: PublicationLedger,
    batch_id: str,
    platforms: Sequence[str],
    *,
    start: datetime,
    slot_times: Sequence[time],
    daily_limit: int,
    publisher_for: Callable[[str], str],
    slot_times_for: Callable[[Persona, str], Sequence[time] | None] | None = None,
) -> BatchSchedule:
    """Schedule the batch's pieces on each platform into the persona's next free slots.

    Only pieces the platform may receive get a slot; every other piece is refused with its reason
    (``result.refused``), so the caller can report how many were held back and why.
    ``slot_times_for(persona, platform)`` may replace ``slot_times`` per platform (learned posting
    hours, ``analytics.feedback.LearnedSlots``); ``None`` from it keeps ``slot_times``.
    """
    with ledger._read() as session:
        batch = session.get(BatchORM, batch_id)
        if batch is None:
            raise InvalidInput(f"unknown batch {batch_id!r}")
        persona_row = session.get(PersonaORM, batch.persona_id)
        assert persona_row is not None
        persona = Persona.model_validate(persona_row.data)
        pieces = list(
            session.scalars(select(PieceORM).where(PieceORM.batch_id == batch_id).order_by(PieceORM.index))
        )
    outcome = BatchSchedule(batch_id)
    for platform in platforms:
        platform = platform.strip().lower()
        eligible = []
        for piece in pieces:
            reason = ledger.refusal(piece, platform)
            if reason is None:
                eligible.append(piece.id)
            else:
                outcome.result.refused.append(
                    (piece.id, platform, f"piece {piece.id} on {platform}: {reason}")
                )
        if not eligible:
            outcome.slots[platform] = []
            continue
        existing = {row.piece_id for row in ledger.list(platform=platform, batch_id=batch_id, limit=None)}
        fresh = [piece_id for piece_id in eligible if piece_id not in existing]
        learned = slot_times_for(persona, platform) if slot_times_for is not None else None
        slots = assign_slots(
            fresh,
            timezone=persona.timezone,
            slot_times=learned or slot_times,
            daily_limit=daily_limit,
            start=start,
            taken=ledger.taken_slots(persona.id, platform),
        )
        outcome.slots[platform] = slots
        part = ledger.schedule_many(
            [(piece_id, platform, when) for piece_id, when in slots], publisher_for=publisher_for
        )
        outcome.result.scheduled += part.scheduled
        outcome.result.existing += part.existing
        outcome.result.refused += part.refused
    return outcome


def offline_caption_writer(piece: PieceORM, persona: Persona, platform: Platform) -> tuple[str, str] | None:
    """A caption from the offline hook writer for pieces without a stored hook for ``platform``."""
    from contentforge.catalog import load_templates
    from contentforge.text.hooks import OfflineHookWriter

    template = next((t for t in load_templates() if t.id == piece.template_id), None)
    if template is None:
        return None
    hook = OfflineHookWriter().write_hooks(persona, template, platform, count=1, seed=piece.seed)[0]
    alt_text = f"AI-generated image by {persona.name}: {template.pose}, {template.lighting}"
    return hook.caption, alt_text[:1000]
