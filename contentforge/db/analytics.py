"""The analytics store: posts and their metric snapshots, account days, learned weights, alerts, pauses.

Writes are idempotent where the world repeats itself: a snapshot is keyed by (post, nominal age) and
an account day by (account, day), so a collector that runs twice or a CSV exported and imported
again replaces numbers instead of adding them. An account holds either real or simulated data: a
write that would mix them is refused (``SimulatedMixing``), so a demo can never leak into what a real
account learns from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from contentforge.db.models import HookORM, PieceORM, PublicationORM
from contentforge.db.models_analytics import (
    AccountDayORM,
    AnalyticsAlertORM,
    AnalyticsPostORM,
    LearnedWeightORM,
    MetricSnapshotORM,
    PieceFeedbackORM,
    PublishingPauseORM,
)
from contentforge.db.sessions import Store, insert_for, require_aware, rows_changed
from contentforge.domain.analytics import METRICS, AccountDay, LearnedWeight, PostMetrics
from contentforge.errors import InvalidInput

ALERT_WINDOW = timedelta(days=7)
"""An alert detected longer ago than this is history: recorded, never sent (e.g. on a first import)."""


class SimulatedMixing(InvalidInput):
    """Real and simulated data for one account: refused, they must never be learned from together."""


@dataclass(frozen=True)
class RecordCounts:
    """What a write of observations did: new posts, new snapshots, snapshots replaced in place."""

    posts_added: int
    snapshots_added: int
    snapshots_replaced: int


@dataclass(frozen=True)
class Account:
    account: str
    platform: str
    simulated: bool
    posts: int


@dataclass(frozen=True)
class Alert:
    id: int
    account: str
    platform: str
    kind: str
    starts_on: date
    detail: dict[str, Any]
    simulated: bool
    notified_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class Pause:
    id: int
    persona_id: str
    platform: str
    reason: str
    paused_at: datetime
    paused_until: datetime
    resumed_at: datetime | None
    alert_id: int | None


@dataclass(frozen=True)
class DuePost:
    """A published post whose next snapshot ages have passed: what a collector is asked for."""

    publication_id: int
    piece_id: str
    persona_id: str
    platform: str
    post_id: str
    published_at: datetime
    caption: str
    template_id: str
    tier: str
    storage_key: str | None
    hook_style: str | None
    """Style of the piece's first hook on the platform (the one whose caption is published)."""
    due_ages: tuple[int, ...]


class AnalyticsStore(Store):
    # --- posts and snapshots ---------------------------------------------------------------------

    def _refuse_mixing(self, session: Any, table: Any, keys: Iterable[tuple[str, str, bool]]) -> None:
        for account, platform, simulated in set(keys):
            other = session.scalar(
                select(func.count())
                .select_from(table)
                .where(table.account == account, table.platform == platform, table.simulated != simulated)
            )
            if other:
                held, given = ("real", "simulated") if simulated else ("simulated", "real")
                raise SimulatedMixing(
                    f"account {account!r} on {platform} holds {held} data; {given} data is never mixed "
                    "with it: use another account name"
                )

    def record(self, observations: Sequence[PostMetrics]) -> RecordCounts:
        """Store posts (once each) and one snapshot per (post, age), replacing an earlier one."""
        if not observations:
            return RecordCounts(0, 0, 0)
        for obs in observations:
            require_aware("posted_at", obs.posted_at)
            require_aware("collected_at", obs.collected_at)
        posts_added = 0
        with self._db.write() as session:
            self._refuse_mixing(
                session, AnalyticsPostORM, ((o.account, o.platform, o.simulated) for o in observations)
            )
            ids: dict[tuple[str, str, str], int] = {}
            for obs in observations:
                key = (obs.platform, obs.account, obs.post_id)
                if key in ids:
                    continue
                row = session.scalar(
                    select(AnalyticsPostORM).where(
                        AnalyticsPostORM.platform == obs.platform,
                        AnalyticsPostORM.account == obs.account,
                        AnalyticsPostORM.post_id == obs.post_id,
                    )
                )
                if row is None:
                    row = AnalyticsPostORM(
                        account=obs.account,
                        platform=obs.platform,
                        post_id=obs.post_id,
                        posted_at=obs.posted_at,
                        piece_id=obs.piece_id,
                        publication_id=obs.publication_id,
                        source=obs.source,
                        simulated=obs.simulated,
                        features=dict(obs.features),
                    )
                    session.add(row)
                    session.flush()
                    posts_added += 1
                elif obs.features:
                    row.features = {**row.features, **obs.features}
                ids[key] = row.id
            existing = set(
                session.execute(
                    select(MetricSnapshotORM.post_row_id, MetricSnapshotORM.age_hours).where(
                        MetricSnapshotORM.post_row_id.in_(set(ids.values()))
                    )
                ).all()
            )
            values: dict[tuple[int, int], dict[str, Any]] = {}
            for obs in observations:
                row_id = ids[(obs.platform, obs.account, obs.post_id)]
                values[(row_id, obs.age_hours)] = {
                    "post_row_id": row_id,
                    "age_hours": obs.age_hours,
                    "collected_at": obs.collected_at,
                    **{m: getattr(obs, m) for m in METRICS},
                    "extra": dict(obs.extra) or None,
                }
            snapshots_replaced = len(values.keys() & existing)
            snapshots_added = len(values) - snapshots_replaced
            stmt = insert_for(session, MetricSnapshotORM).values(list(values.values()))
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["post_row_id", "age_hours"],
                    set_={c: stmt.excluded[c] for c in ("collected_at", *METRICS, "extra")},
                )
            )
        return RecordCounts(posts_added, snapshots_added, snapshots_replaced)

    def observations(self, account: str, platform: str, age_hours: int | None = None) -> list[PostMetrics]:
        """Every snapshot of one account (at one age when given), oldest post first."""
        query = (
            select(AnalyticsPostORM, MetricSnapshotORM)
            .join(MetricSnapshotORM, MetricSnapshotORM.post_row_id == AnalyticsPostORM.id)
            .where(AnalyticsPostORM.account == account, AnalyticsPostORM.platform == platform)
            .order_by(AnalyticsPostORM.posted_at, AnalyticsPostORM.id, MetricSnapshotORM.age_hours)
        )
        if age_hours is not None:
            query = query.where(MetricSnapshotORM.age_hours == age_hours)
        with self._db.read() as session:
            return [
                PostMetrics(
                    account=post.account,
                    platform=post.platform,
                    post_id=post.post_id,
                    posted_at=post.posted_at,
                    age_hours=snap.age_hours,
                    collected_at=snap.collected_at,
                    source=post.source,
                    **{m: getattr(snap, m) for m in METRICS},
                    extra=dict(snap.extra or {}),
                    features=dict(post.features),
                    piece_id=post.piece_id,
                    publication_id=post.publication_id,
                )
                for post, snap in session.execute(query).tuples()
            ]

    def accounts(self, *, simulated: bool | None = None) -> list[Account]:
        """Accounts with posts, and whether they are simulated."""
        query = (
            select(
                AnalyticsPostORM.account,
                AnalyticsPostORM.platform,
                AnalyticsPostORM.simulated,
                func.count(AnalyticsPostORM.id),
            )
            .group_by(AnalyticsPostORM.account, AnalyticsPostORM.platform, AnalyticsPostORM.simulated)
            .order_by(AnalyticsPostORM.account, AnalyticsPostORM.platform)
        )
        if simulated is not None:
            query = query.where(AnalyticsPostORM.simulated == simulated)
        with self._db.read() as session:
            return [Account(a, p, bool(s), int(n)) for a, p, s, n in session.execute(query).tuples()]

    def delete_simulated(self, account: str) -> int:
        """Remove a simulated account's posts, snapshots, days, weights and alerts (a demo rerun).

        Refuses an account that holds real data: nothing real is ever deleted this way.
        """
        with self._db.write() as session:
            real = session.scalar(
                select(func.count())
                .select_from(AnalyticsPostORM)
                .where(AnalyticsPostORM.account == account, AnalyticsPostORM.simulated.is_(False))
            )
            if real:
                raise SimulatedMixing(
                    f"account {account!r} holds real data; only simulated accounts are deleted"
                )
            posts = rows_changed(
                session.execute(delete(AnalyticsPostORM).where(AnalyticsPostORM.account == account))
            )
            for table in (AccountDayORM, LearnedWeightORM, AnalyticsAlertORM):
                session.execute(delete(table).where(table.account == account, table.simulated.is_(True)))
            return posts

    # --- account days ----------------------------------------------------------------------------

    def record_account_days(self, days: Sequence[AccountDay]) -> int:
        """Store daily account values; a day already stored is replaced. Returns how many were new."""
        if not days:
            return 0
        with self._db.write() as session:
            self._refuse_mixing(session, AccountDayORM, ((d.account, d.platform, d.simulated) for d in days))
            keys = {(d.platform, d.account, d.day) for d in days}
            existing = {
                (p, a, d)
                for p, a, d in session.execute(
                    select(AccountDayORM.platform, AccountDayORM.account, AccountDayORM.day).where(
                        or_(
                            *(
                                and_(AccountDayORM.platform == p, AccountDayORM.account == a)
                                for p, a in {(p, a) for p, a, _ in keys}
                            )
                        )
                    )
                ).tuples()
            }
            rows = {
                (d.platform, d.account, d.day): {
                    "account": d.account,
                    "platform": d.platform,
                    "day": d.day,
                    "followers": d.followers,
                    "reach": d.reach,
                    "source": d.source,
                    "simulated": d.simulated,
                }
                for d in days
            }
            stmt = insert_for(session, AccountDayORM).values(list(rows.values()))
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["platform", "account", "day"],
                    set_={c: stmt.excluded[c] for c in ("followers", "reach")},
                )
            )
        return len(keys - existing)

    def account_days(self, account: str, platform: str) -> list[AccountDay]:
        with self._db.read() as session:
            rows = session.scalars(
                select(AccountDayORM)
                .where(AccountDayORM.account == account, AccountDayORM.platform == platform)
                .order_by(AccountDayORM.day)
            )
            return [AccountDay(r.account, r.platform, r.day, r.source, r.followers, r.reach) for r in rows]

    # --- learned weights -------------------------------------------------------------------------

    def save_weights(
        self,
        account: str,
        platform: str,
        weights: Sequence[LearnedWeight],
        *,
        simulated: bool,
        computed_at: datetime,
    ) -> None:
        """Replace everything learned for the account with ``weights`` (one learn run's conclusions)."""
        require_aware("computed_at", computed_at)
        with self._db.write() as session:
            session.execute(
                delete(LearnedWeightORM).where(
                    LearnedWeightORM.account == account, LearnedWeightORM.platform == platform
                )
            )
            session.add_all(
                LearnedWeightORM(
                    account=account,
                    platform=platform,
                    kind=w.kind,
                    key=w.key,
                    lift=w.lift,
                    lower=w.lower,
                    upper=w.upper,
                    n_posts=w.n_posts,
                    simulated=simulated,
                    computed_at=computed_at,
                )
                for w in weights
            )

    def weights(
        self, account: str, platform: str, kind: str | None = None, *, simulated: bool = False
    ) -> list[LearnedWeight]:
        """The account's learned weights; real ones unless ``simulated``, so a demo never steers a persona."""
        query = select(LearnedWeightORM).where(
            LearnedWeightORM.account == account,
            LearnedWeightORM.platform == platform,
            LearnedWeightORM.simulated == simulated,
        )
        if kind is not None:
            query = query.where(LearnedWeightORM.kind == kind)
        with self._db.read() as session:
            return [
                LearnedWeight(r.kind, r.key, r.lift, r.lower, r.upper, r.n_posts)
                for r in session.scalars(query.order_by(LearnedWeightORM.kind, LearnedWeightORM.lift.desc()))
            ]

    # --- alerts and pauses -----------------------------------------------------------------------

    def add_alert(
        self,
        account: str,
        platform: str,
        kind: str,
        starts_on: date,
        detail: dict[str, Any],
        *,
        simulated: bool,
    ) -> tuple[Alert, bool]:
        """The alert for (account, platform, kind, start day), and whether this call created it."""
        with self._db.write() as session:
            stmt = insert_for(session, AnalyticsAlertORM).values(
                account=account,
                platform=platform,
                kind=kind,
                starts_on=starts_on,
                detail=detail,
                simulated=simulated,
            )
            created = session.scalar(
                stmt.on_conflict_do_nothing(
                    index_elements=["account", "platform", "kind", "starts_on"]
                ).returning(AnalyticsAlertORM.id)
            )
            row = session.scalars(
                select(AnalyticsAlertORM).where(
                    AnalyticsAlertORM.account == account,
                    AnalyticsAlertORM.platform == platform,
                    AnalyticsAlertORM.kind == kind,
                    AnalyticsAlertORM.starts_on == starts_on,
                )
            ).one()
            return _alert(row), created is not None

    def alerts(self, account: str | None = None) -> list[Alert]:
        query = select(AnalyticsAlertORM).order_by(AnalyticsAlertORM.starts_on.desc(), AnalyticsAlertORM.id)
        if account is not None:
            query = query.where(AnalyticsAlertORM.account == account)
        with self._db.read() as session:
            return [_alert(r) for r in session.scalars(query)]

    def mark_notified(self, alert_id: int, at: datetime) -> None:
        require_aware("at", at)
        with self._db.write() as session:
            session.execute(
                update(AnalyticsAlertORM).where(AnalyticsAlertORM.id == alert_id).values(notified_at=at)
            )

    def pause(
        self,
        persona_id: str,
        platform: str,
        *,
        until: datetime,
        reason: str,
        now: datetime,
        alert_id: int | None = None,
    ) -> Pause:
        """Hold publishing for the persona on the platform; an active pause is extended, not doubled."""
        require_aware("until", until)
        require_aware("now", now)
        if not reason.strip():
            raise InvalidInput("a publishing pause needs a reason")
        with self._db.write() as session:
            return _pause(_pause_row(session, persona_id, platform, until, reason, now, alert_id))

    def pending_alerts(
        self,
        *,
        now: datetime,
        window: timedelta = ALERT_WINDOW,
        account: str | None = None,
        platform: str | None = None,
    ) -> list[Alert]:
        """Real alerts not yet notified whose drop was detected within ``window`` of ``now``.

        Read from the table rather than from what this run created, so an alert whose notification
        failed, or whose run crashed before acting, is acted on by the next run. Simulated alerts are
        never sent: they only show in reports.
        """
        require_aware("now", now)
        query = select(AnalyticsAlertORM).where(
            AnalyticsAlertORM.notified_at.is_(None), AnalyticsAlertORM.simulated.is_(False)
        )
        if account is not None:
            query = query.where(AnalyticsAlertORM.account == account)
        if platform is not None:
            query = query.where(AnalyticsAlertORM.platform == platform)
        with self._db.read() as session:
            alerts = [_alert(r) for r in session.scalars(query.order_by(AnalyticsAlertORM.id))]
        return [a for a in alerts if now.date() - _detected_on(a) <= window]

    def pause_for_alert(
        self, alert_id: int, *, until: datetime, reason: str, now: datetime
    ) -> tuple[Pause | None, bool]:
        """Pause once per alert: ``(its pause, whether this call made it)``.

        The pause's id is written into the alert's detail in the same transaction (the alert row
        locked), so a retried or concurrent run never extends the pause again, nor re-pauses a persona
        that a person resumed. ``None`` when the alert's pause has since been deleted.
        """
        require_aware("until", until)
        require_aware("now", now)
        with self._db.write() as session:
            alert = session.scalars(
                select(AnalyticsAlertORM).where(AnalyticsAlertORM.id == alert_id).with_for_update()
            ).one()
            if "pause_id" in alert.detail:
                done = session.get(PublishingPauseORM, alert.detail["pause_id"])
                return (None if done is None else _pause(done)), False
            row = _pause_row(session, alert.account, alert.platform, until, reason, now, alert_id)
            alert.detail = {**alert.detail, "pause_id": row.id}
            return _pause(row), True

    def active_pause(self, persona_id: str, platform: str, now: datetime) -> Pause | None:
        """The pause holding the persona's publishing on the platform at ``now``, if any."""
        require_aware("now", now)
        with self._db.read() as session:
            row = session.scalars(_active(persona_id, platform, now)).first()
            return None if row is None else _pause(row)

    def pauses(self, persona_id: str | None = None) -> list[Pause]:
        query = select(PublishingPauseORM).order_by(PublishingPauseORM.paused_at.desc())
        if persona_id is not None:
            query = query.where(PublishingPauseORM.persona_id == persona_id)
        with self._db.read() as session:
            return [_pause(r) for r in session.scalars(query)]

    def resume(self, persona_id: str, platform: str, *, by: str, now: datetime) -> int:
        """End the active pauses now (a person's decision); returns how many were ended."""
        require_aware("now", now)
        with self._db.write() as session:
            rows = list(session.scalars(_active(persona_id, platform, now)))
            for row in rows:
                row.resumed_at = now
                row.resumed_by = by
            return len(rows)

    # --- what a collector should fetch, and what influenced a piece --------------------------------

    def due_for_collection(self, now: datetime, ages: Sequence[int]) -> list[DuePost]:
        """Published posts whose largest reached snapshot age is newer than every snapshot stored."""
        require_aware("now", now)
        with self._db.read() as session:
            rows = session.execute(
                select(PublicationORM, PieceORM)
                .join(PieceORM, PieceORM.id == PublicationORM.piece_id)
                .where(
                    PublicationORM.status == "published",
                    PublicationORM.platform_post_id.is_not(None),
                    PublicationORM.published_at.is_not(None),
                )
                .order_by(PublicationORM.published_at)
            ).tuples()
            result: list[DuePost] = []
            for pub, piece in rows:
                assert pub.published_at is not None and pub.platform_post_id is not None
                stored = set(
                    session.scalars(
                        select(MetricSnapshotORM.age_hours)
                        .join(AnalyticsPostORM, AnalyticsPostORM.id == MetricSnapshotORM.post_row_id)
                        .where(
                            AnalyticsPostORM.platform == pub.platform,
                            AnalyticsPostORM.post_id == pub.platform_post_id,
                        )
                    )
                )
                age_h = (now - pub.published_at).total_seconds() / 3600
                # Only the largest age reached counts: ages a late run missed are not back-filled
                # with later numbers.
                reached = [a for a in ages if a <= age_h]
                due = (max(reached),) if reached and max(reached) > max(stored, default=0) else ()
                if due:
                    hook_style = session.scalar(
                        select(HookORM.style).where(
                            HookORM.piece_id == piece.id,
                            HookORM.platform == pub.platform,
                            HookORM.position == 0,
                        )
                    )
                    result.append(
                        DuePost(
                            publication_id=pub.id,
                            piece_id=piece.id,
                            persona_id=piece.persona_id,
                            platform=pub.platform,
                            post_id=pub.platform_post_id,
                            published_at=pub.published_at,
                            caption=pub.caption,
                            template_id=piece.template_id,
                            tier=piece.tier or piece.template_tier,
                            # The image the post carried: a variation's when it was bound as the cover.
                            storage_key=(pub.detail or {}).get("media", {}).get("storage_key")
                            or piece.storage_key,
                            hook_style=hook_style,
                            due_ages=due,
                        )
                    )
            return result

    def record_feedback(self, piece_id: str, decisions: dict[str, Any]) -> None:
        """Record (merging into what is there) which learned weights influenced a piece, and how."""
        with self._db.write() as session:
            row = session.get(PieceFeedbackORM, piece_id)
            if row is None:
                session.add(PieceFeedbackORM(piece_id=piece_id, decisions=dict(decisions)))
            else:
                row.decisions = {**row.decisions, **decisions}

    def feedback_of(self, piece_id: str) -> dict[str, Any] | None:
        with self._db.read() as session:
            row = session.get(PieceFeedbackORM, piece_id)
            return None if row is None else dict(row.decisions)


def _active(persona_id: str, platform: str, now: datetime) -> Any:
    return (
        select(PublishingPauseORM)
        .where(
            PublishingPauseORM.persona_id == persona_id,
            PublishingPauseORM.platform == platform,
            PublishingPauseORM.resumed_at.is_(None),
            PublishingPauseORM.paused_until > now,
        )
        .order_by(PublishingPauseORM.paused_until.desc())
    )


def _pause_row(
    session: Any,
    persona_id: str,
    platform: str,
    until: datetime,
    reason: str,
    now: datetime,
    alert_id: int | None,
) -> PublishingPauseORM:
    """Create the pause, or extend the active one (never two active pauses for one platform)."""
    if not reason.strip():
        raise InvalidInput("a publishing pause needs a reason")
    row = session.scalars(_active(persona_id, platform, now)).first()
    if row is None:
        row = PublishingPauseORM(
            persona_id=persona_id,
            platform=platform,
            reason=reason,
            alert_id=alert_id,
            paused_at=now,
            paused_until=until,
        )
        session.add(row)
    else:
        row.paused_until = max(row.paused_until, until)
        row.reason = reason
        row.alert_id = alert_id if alert_id is not None else row.alert_id
    session.flush()
    return row  # type: ignore[no-any-return]


def _detected_on(alert: Alert) -> date:
    detected = alert.detail.get("detected_on")
    return date.fromisoformat(detected) if isinstance(detected, str) else alert.starts_on


def _alert(row: AnalyticsAlertORM) -> Alert:
    return Alert(
        row.id,
        row.account,
        row.platform,
        row.kind,
        row.starts_on,
        dict(row.detail),
        row.simulated,
        row.notified_at,
        row.created_at,
    )


def _pause(row: PublishingPauseORM) -> Pause:
    return Pause(
        row.id,
        row.persona_id,
        row.platform,
        row.reason,
        row.paused_at,
        row.paused_until,
        row.resumed_at,
        row.alert_id,
    )
