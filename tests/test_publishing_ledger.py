"""The publication ledger (eligibility, claims, resumption) and posting slots, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from support.publishing import T0, make_world, set_piece_status

from contentforge.errors import InvalidInput
from contentforge.publishing import PublishedPost, PublishRefused, idempotency_key
from contentforge.publishing.scheduling import (
    assign_slots,
    offline_caption_writer,
    parse_plan_csv,
    parse_slot_times,
    schedule_batch,
)

STATES = [
    "ready-safe", "ready-suggestive", "ready-restricted", "rejected", "needs_review", "failed", "planned",
    "generated",
]  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_url")


def test_only_ready_pieces_with_an_accepted_verdict_are_scheduled(tmp_path: Path, db_url: str | None) -> None:
    world = make_world(tmp_path, STATES, url=db_url, caption_writer=offline_caption_writer)
    items = [(pid, "instagram", T0) for pid in world.pieces] + [(pid, "linkedin", T0) for pid in world.pieces]
    result = world.ledger.schedule_many(items, publisher_for=lambda p: "outbox")
    scheduled = {world.ledger.get(i).piece_id + ":" + world.ledger.get(i).platform for i in result.scheduled}
    # Safe goes everywhere; suggestive to instagram but not linkedin (policy); nothing else anywhere.
    assert scheduled == {
        f"{world.ids('ready-safe')[0]}:instagram",
        f"{world.ids('ready-safe')[0]}:linkedin",
        f"{world.ids('ready-suggestive')[0]}:instagram",
    }
    assert result.refused_count == 2 * len(STATES) - 3
    reasons = {(pid, platform): reason for pid, platform, reason in result.refused}
    assert "'rejected'" in reasons[(world.ids("rejected")[0], "instagram")]
    assert "'needs_review'" in reasons[(world.ids("needs_review")[0], "instagram")]
    assert "'failed'" in reasons[(world.ids("failed")[0], "instagram")]
    assert "not accepted on linkedin" in reasons[(world.ids("ready-suggestive")[0], "linkedin")]
    with pytest.raises(PublishRefused, match="restricted"):
        world.ledger.schedule(world.ids("ready-restricted")[0], "instagram", T0, publisher="outbox")


def test_scheduling_twice_keeps_one_row_with_a_deterministic_key(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"])
    piece = world.ids("ready-safe")[0]
    first, created = world.ledger.schedule(piece, "x", T0, publisher="outbox")
    again, created_again = world.ledger.schedule(piece, "x", T0 + timedelta(days=1), publisher="outbox")
    assert (first, created, created_again) == (again, True, False)
    row = world.ledger.get(first)
    assert row.idempotency_key == idempotency_key(piece, "x") != idempotency_key(piece, "instagram")
    assert row.scheduled_for == T0
    assert row.caption.startswith("Hook 0 for x")


def test_claims_only_due_rows_and_fails_pieces_rejected_after_scheduling(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe", "ready-safe", "ready-safe"])
    a, b, c = world.pieces
    ids = {pid: world.ledger.schedule(pid, "instagram", T0, publisher="outbox")[0] for pid in (a, b)}
    later, _ = world.ledger.schedule(c, "instagram", T0 + timedelta(hours=5), publisher="outbox")
    set_piece_status(world.engine, b, "rejected")  # a reviewer changed their mind
    claimed = world.ledger.claim_due(now=T0 + timedelta(minutes=1))
    assert [p.piece_id for p in claimed] == [a]
    assert world.ledger.get(ids[a]).status == "publishing"
    assert world.ledger.get(ids[a]).attempts == 1
    assert world.ledger.get(ids[b]).status == "failed"
    assert "'rejected'" in (world.ledger.get(ids[b]).last_error or "")
    assert world.ledger.get(later).status == "scheduled"
    assert world.ledger.claim_due(now=T0 + timedelta(minutes=1)) == []


def test_two_concurrent_claimers_never_claim_the_same_row(tmp_path: Path, db_url: str | None) -> None:
    world = make_world(tmp_path, ["ready-safe"] * 12, url=db_url)
    for pid in world.pieces:
        for platform in ("instagram", "x"):
            world.ledger.schedule(pid, platform, T0, publisher="outbox")
    claims: dict[str, list[int]] = {"w1": [], "w2": [], "w3": [], "w4": []}
    barrier = threading.Barrier(len(claims))

    def worker(name: str) -> None:
        barrier.wait()
        while batch := world.ledger.claim_due(limit=2, now=T0 + timedelta(minutes=1)):
            claims[name] += [p.id for p in batch]

    threads = [threading.Thread(target=worker, args=(n,)) for n in claims]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for ids in claims.values() for i in ids]
    assert len(everything) == len(set(everything)) == 24
    assert all(world.ledger.get(i).attempts == 1 for i in everything)


def test_a_stale_publishing_row_is_resumed_with_its_container(tmp_path: Path) -> None:
    world = make_world(tmp_path, ["ready-safe"])
    pid = next(iter(world.pieces))
    pub_id, _ = world.ledger.schedule(pid, "instagram", T0, publisher="instagram")
    claimed = world.ledger.claim_due(now=T0)
    world.ledger.record_container(pub_id, claimed[0].claim_token, "container-1")
    # The worker died here. A fresh run right away leaves the row to its (maybe still alive) owner…
    assert world.ledger.claim_due(now=datetime.now(UTC), stale_after_s=600) == []
    # …and resumes it once it is stale, with the stored container id.
    resumed = world.ledger.claim_due(now=datetime.now(UTC) + timedelta(hours=1), stale_after_s=600)
    assert [p.id for p in claimed] == [p.id for p in resumed] == [pub_id]
    assert resumed[0].container_id == "container-1"
    assert world.ledger.get(pub_id).attempts == 2
    assert resumed[0].claim_token != claimed[0].claim_token
    row = world.ledger.mark_published(
        pub_id, resumed[0].claim_token, PublishedPost("m1", "https://example/p/1")
    )
    assert (row.status, row.platform_post_id, row.published_at is not None) == ("published", "m1", True)
    assert row.claim_token is None
    assert world.ledger.claim_due(now=datetime.now(UTC) + timedelta(days=1), stale_after_s=120) == []


def test_slots_use_the_persona_timezone_and_the_daily_limit() -> None:
    slots = parse_slot_times("19:00, 09:00,13:00")
    assert slots == [time(9), time(13), time(19)]
    start = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # 11:00 in Berlin, 05:00 in New York
    berlin = assign_slots(["a", "b", "c", "d"], timezone="Europe/Berlin", slot_times=slots, daily_limit=2,
                          start=start)  # fmt: skip
    # 09:00 Berlin (08:00 UTC) has passed; 13:00 and 19:00 today, then 09:00 and 13:00 tomorrow.
    assert [w for _, w in berlin] == [
        datetime(2026, 1, 5, 12, 0, tzinfo=UTC),
        datetime(2026, 1, 5, 18, 0, tzinfo=UTC),
        datetime(2026, 1, 6, 8, 0, tzinfo=UTC),
        datetime(2026, 1, 6, 12, 0, tzinfo=UTC),
    ]
    new_york = assign_slots(["a"], timezone="America/New_York", slot_times=slots, daily_limit=2, start=start)
    assert new_york == [("a", datetime(2026, 1, 5, 14, 0, tzinfo=UTC))]
    # Taken slots are skipped and count towards the day's limit; the result is deterministic.
    taken = [datetime(2026, 1, 5, 12, 0, tzinfo=UTC)]
    again = assign_slots(["a", "b"], timezone="Europe/Berlin", slot_times=slots, daily_limit=2, start=start,
                         taken=taken)  # fmt: skip
    assert [w for _, w in again] == [
        datetime(2026, 1, 5, 18, 0, tzinfo=UTC),
        datetime(2026, 1, 6, 8, 0, tzinfo=UTC),
    ]
    assert again == assign_slots(["a", "b"], timezone="Europe/Berlin", slot_times=slots, daily_limit=2,
                                 start=start, taken=taken)  # fmt: skip
    # Across the spring DST change 09:00 Berlin moves from 08:00 to 07:00 UTC.
    dst = assign_slots(["a", "b"], timezone="Europe/Berlin", slot_times=[time(9)], daily_limit=1,
                       start=datetime(2026, 3, 28, 9, 0, tzinfo=UTC))  # fmt: skip
    assert [w for _, w in dst] == [
        datetime(2026, 3, 29, 7, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
    ]
    with pytest.raises(InvalidInput, match="'9h'"):
        parse_slot_times("09:00,9h")


def test_posting_plan_csv_reports_each_bad_row() -> None:
    zones = {"p1": "Europe/Berlin", "p2": "UTC"}
    rows = parse_plan_csv(
        "piece_id,platform,when\np1,instagram,2026-03-01T09:00\np2,x,2026-03-01T09:00+02:00\n", zones.get
    )
    assert [(r.row, r.when) for r in rows] == [
        (2, datetime(2026, 3, 1, 8, 0, tzinfo=UTC)),
        (3, datetime(2026, 3, 1, 7, 0, tzinfo=UTC)),
    ]
    bad = (
        "piece_id,platform,when\np1,instagram,tomorrow\nzz,x,2026-03-01T09:00\np2,myspace,2026-03-01T09:00\n"
    )
    with pytest.raises(InvalidInput) as info:
        parse_plan_csv(bad, zones.get)
    message = str(info.value)
    assert "row 2: when 'tomorrow'" in message
    assert "row 3: unknown piece 'zz'" in message
    assert "row 4: unknown platform 'myspace'" in message
    with pytest.raises(InvalidInput, match="lacks columns"):
        parse_plan_csv("piece,platform\n", zones.get)


def test_schedule_batch_fills_free_slots_and_counts_refusals(tmp_path: Path) -> None:
    world = make_world(
        tmp_path, ["ready-safe"] * 5 + ["rejected", "needs_review"], hook_platforms=("instagram",),
        caption_writer=offline_caption_writer,
    )  # fmt: skip
    start = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
    kwargs = {
        "start": start,
        "slot_times": [time(9), time(19)],
        "daily_limit": 2,
        "publisher_for": lambda p: "outbox",
    }
    outcome = schedule_batch(world.ledger, world.batch_id, ["instagram", "x"], **kwargs)
    assert len(outcome.result.scheduled) == 10
    assert outcome.result.refused_count == 4
    times = sorted(w for _, w in outcome.slots["instagram"])
    assert times[0] == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # 09:00 Berlin
    per_day: dict[object, int] = {}
    for when in times:
        per_day[when.date()] = per_day.get(when.date(), 0) + 1
    assert max(per_day.values()) == 2 and len(times) == 5
    # x had no stored hooks: its captions come from the offline writer and fit X's rules.
    x_rows = world.ledger.list(platform="x")
    assert len(x_rows) == 5 and all(row.caption for row in x_rows)
    # Running it again schedules nothing new.
    again = schedule_batch(world.ledger, world.batch_id, ["instagram", "x"], **kwargs)
    assert again.result.scheduled == [] and again.result.refused_count == 4


def test_captions_carry_the_ai_label_the_disclosure_settings_ask_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contentforge.config import Settings
    from contentforge.publishing import PublicationLedger
    from contentforge.publishing.factory import caption_with_disclosure

    monkeypatch.setenv("CONTENTFORGE_AI_DISCLOSURE", '{"x": "label", "instagram": "flag"}')
    settings = Settings()
    world = make_world(tmp_path, ["ready-safe"])
    labelled = PublicationLedger(
        world.engine, world.ledger.policy, caption_label=caption_with_disclosure(settings)
    )
    piece = world.ids("ready-safe")[0]
    on_x, _ = labelled.schedule(piece, "x", T0, publisher="outbox")
    on_instagram, _ = labelled.schedule(piece, "instagram", T0, publisher="outbox")
    assert labelled.get(on_x).caption.endswith(settings.ai_disclosure_label)
    assert settings.ai_disclosure_label not in labelled.get(on_instagram).caption  # the API flag only


def test_instagram_and_tiktok_publishers_send_the_ai_flags_by_default(tmp_path: Path) -> None:
    from contentforge.config import Settings
    from contentforge.publishing.factory import build_publisher

    settings = Settings(
        data_dir=tmp_path,
        instagram_user_id="1",
        instagram_access_token="t",
        tiktok_access_token="t",
        publisher_instagram="api",
        publisher_tiktok="api",
    )
    assert build_publisher(settings, "instagram").ai_disclosure_param == "is_ai_generated"
    assert build_publisher(settings, "tiktok").is_aigc is True
    off = settings.model_copy(update={"ai_disclosure": {"instagram": "off", "tiktok": "off"}})
    assert build_publisher(off, "instagram").ai_disclosure_param is None
    assert build_publisher(off, "tiktok").is_aigc is False
