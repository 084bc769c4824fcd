"""Analytics over the API: accounts, what each one's data say, plots (PNG) and alerts; read-only.

Learning runs from the stored metrics (the same ``learn_account`` as the ``learn`` flow, without
saving), once per account and state of its data: the learning is cached under a digest of the
snapshots and account days it came from, so the page always shows the current data while a page
view (summary and four plots) or a client polling it learns at most once. Simulated accounts say so
in every answer and every plot.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from contentforge.analytics import plots
from contentforge.analytics.image_features import image_features
from contentforge.analytics.learn import AccountLearning, LearnConfig, learn_account
from contentforge.analytics.learning_cache import LearningCache, data_digest
from contentforge.analytics.planned import planned_frame, predict_planned
from contentforge.db.analytics import AnalyticsStore
from contentforge.db.rows import PieceRow
from contentforge.domain.models import ID_PATTERN
from contentforge_api.errors import ApiError
from contentforge_api.responses import AUTH, documented
from contentforge_api.state import Reader, State

router = APIRouter(tags=["analytics"])
PLATFORMS = "^(instagram|x|tiktok)$"
ACCOUNT = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,119}$"
PLOT_NAMES = ("reach", "best-times", "rankings", "predicted-vs-actual")
LEARNINGS: LearningCache[AccountLearning] = LearningCache(size=32)
"""Keyed by account, platform, time zone and data digest: correct across databases and processes."""
IMAGE_FEATURES: LearningCache[dict[str, float]] = LearningCache(size=4096)
"""A stored image's features by its key and content digest: a gallery view does not decode every image."""


def _store(state: State) -> AnalyticsStore:
    return AnalyticsStore(state.services.sessions)


def _learn(state: State, platform: str, account: str) -> AccountLearning:
    """The account's learning (model included, the summary and a plot need it), cached by its data."""
    store = _store(state)
    if not any(a.account == account and a.platform == platform for a in store.accounts()):
        raise ApiError(404, f"no metrics for {account!r} on {platform}")
    persona = state.repo.get_persona(account)
    timezone = persona.timezone if persona is not None else "UTC"
    observations = store.observations(account, platform)
    days = store.account_days(account, platform)
    return LEARNINGS.get(
        (account, platform, timezone, data_digest(observations, days)),
        lambda: learn_account(
            observations,
            days,
            account=account,
            platform=platform,
            timezone=timezone,
            config=LearnConfig(train_model=True),
        ),
    )


@router.get("/analytics/accounts", responses=documented(AUTH))
def list_accounts(state: State, _identity: Reader) -> dict[str, Any]:
    """Accounts with metrics, each marked simulated or real."""
    accounts = _store(state).accounts()
    return {
        "items": [
            {"account": a.account, "platform": a.platform, "simulated": a.simulated, "posts": a.posts}
            for a in accounts
        ]
    }


@router.get("/analytics/accounts/{platform}/{account}", responses=documented(AUTH, 404))
def account_summary(
    state: State,
    _identity: Reader,
    platform: Annotated[str, Path(pattern=PLATFORMS)],
    account: Annotated[str, Path(pattern=ACCOUNT)],
) -> dict[str, Any]:
    """Best hours with intervals, rankings with intervals, reach drops and the engagement model."""
    learning = _learn(state, platform, account)
    timing = learning.timing
    return {
        "account": account,
        "platform": platform,
        "simulated": learning.simulated,
        "posts": len(learning.frame),
        "timing": {
            "enough": timing.enough,
            "reason": timing.reason,
            "best_hour": timing.best_hour,
            "hours": [
                {"hour": h.hour, "lift": h.lift, "lower": h.lower, "upper": h.upper, "posts": h.n}
                for h in timing.hours
            ],
        },
        "rankings": {
            kind: {
                "ranked": [
                    {"key": w.key, "lift": w.lift, "lower": w.lower, "upper": w.upper, "posts": w.n_posts}
                    for w in ranking.ranked
                ],
                "untested": ranking.untested,
            }
            for kind, ranking in learning.rankings.items()
        },
        "drops": {
            "checked": learning.drops.enough,
            "reason": learning.drops.reason,
            "series": learning.reach_source,
            "found": [
                {
                    "starts_on": d.starts_on.isoformat(),
                    "detected_on": d.detected_on.isoformat(),
                    "depth": d.depth,
                }
                for d in learning.drops.drops
            ],
        },
        "model": None if learning.model is None else learning.model.evaluation.reason,
    }


@router.get(
    "/analytics/accounts/{platform}/{account}/plots/{name}.png",
    responses=documented(AUTH, 404),
    response_class=Response,
)
def account_plot(
    state: State,
    _identity: Reader,
    platform: Annotated[str, Path(pattern=PLATFORMS)],
    account: Annotated[str, Path(pattern=ACCOUNT)],
    name: Annotated[str, Path(pattern="^(" + "|".join(PLOT_NAMES) + ")$")],
) -> Response:
    """One dashboard plot as PNG (``reach``, ``best-times``, ``rankings``, ``predicted-vs-actual``)."""
    learning = _learn(state, platform, account)
    image = {
        "reach": plots.reach_over_time,
        "best-times": plots.hour_of_week_heatmap,
        "rankings": plots.rankings,
        "predicted-vs-actual": plots.predicted_vs_actual,
    }[name](learning)
    if image is None:
        raise ApiError(
            404, f"no {name} plot: {learning.model.evaluation.reason if learning.model else 'no model'}"
        )
    return Response(image, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


@router.get("/analytics/batches/{batch_id}/predictions", responses=documented(AUTH, 404))
def batch_predictions(
    state: State,
    _identity: Reader,
    batch_id: Annotated[str, Path(pattern=ID_PATTERN)],
    platform: Annotated[str | None, Query(pattern=PLATFORMS)] = None,
) -> dict[str, Any]:
    """Predicted engagement per planned piece (1.0 = the account's typical post) and recorded covers.

    Without a usable engagement model there are no predictions, and ``model.reason`` says why
    (no metrics yet, too little history, or it does not beat the account's median). ``platform``
    defaults to the batch's. Covers are those ``contentforge analytics covers`` recorded.
    """
    repo = state.repo
    pieces = repo.pieces(batch_id=batch_id)
    if not pieces:
        raise ApiError(404, f"no pieces in batch {batch_id!r}")
    platform = platform or repo.platform_of_batch(batch_id) or "instagram"
    account = pieces[0].persona_id
    store = _store(state)
    covers = {}
    for piece in pieces:
        cover = (store.feedback_of(piece.id) or {}).get(f"cover:{platform}")
        if cover is not None:
            covers[piece.id] = cover
    answer: dict[str, Any] = {
        "batch_id": batch_id, "account": account, "platform": platform, "predictions": {}, "covers": covers,
    }  # fmt: skip
    if not any(a.account == account and a.platform == platform for a in store.accounts()):
        reason = f"no metrics for {account!r} on {platform} yet: collect or import some first"
        return answer | {"model": {"usable": False, "reason": reason, "simulated": False}}
    learning = _learn(state, platform, account)
    model = learning.model
    usable = model is not None and model.evaluation.usable
    answer["model"] = {
        "usable": usable,
        "reason": model.evaluation.reason if model is not None else "no model trained",
        "simulated": learning.simulated,
    }
    if model is None or not usable:
        return answer
    scheduled = {
        row.piece_id: row.scheduled_for
        for row in state.services.ledger.list(platform=platform, batch_id=batch_id, limit=None)
        if row.scheduled_for is not None
    }
    persona = repo.get_persona(account)
    frame = planned_frame(
        pieces, platform=platform, timezone=persona.timezone if persona is not None else "UTC",
        when_for=scheduled, default_when=datetime.now(UTC), features_for=_features_of(state),
    )  # fmt: skip
    answer["predictions"] = {
        p.piece_id: {
            "predicted": None if p.predicted is None else round(p.predicted, 3),
            "when": p.when.isoformat(),
            "scheduled": p.piece_id in scheduled,
            "hook_style": p.hook_style,
        }
        for p in predict_planned(model, frame)
    }
    return answer


def _features_of(state: State) -> Callable[[PieceRow], dict[str, float]]:
    """A piece's image features, cached by storage key and content digest; none for an image gone
    from storage (the piece is still predicted, without them)."""
    storage = state.storage()

    def measure(key: str) -> dict[str, float]:
        try:
            return image_features(storage.get(key))
        except (OSError, KeyError, ValueError):
            return {}

    def features(piece: PieceRow) -> dict[str, float]:
        key, digest = piece.storage_key, piece.content_sha256
        if not key or not digest:
            return {}
        return IMAGE_FEATURES.get((key, digest), lambda: measure(key))

    return features


@router.get("/analytics/alerts", responses=documented(AUTH))
def list_alerts(state: State, _identity: Reader) -> dict[str, Any]:
    """Reach-drop alerts (newest first) and publishing pauses."""
    store = _store(state)
    return {
        "alerts": [
            {
                "id": a.id, "account": a.account, "platform": a.platform,
                "starts_on": a.starts_on.isoformat(), "detail": a.detail, "simulated": a.simulated,
                "notified_at": a.notified_at.isoformat() if a.notified_at else None,
            }
            for a in store.alerts()
        ],
        "pauses": [
            {
                "persona_id": p.persona_id, "platform": p.platform, "reason": p.reason,
                "paused_until": p.paused_until.isoformat(),
                "resumed_at": p.resumed_at.isoformat() if p.resumed_at else None,
            }
            for p in store.pauses()
        ],
    }  # fmt: skip
