"""Learning recovers the effects planted in simulated accounts, and refuses to conclude on too little.

The simulated accounts are built once per module (they are pure and deterministic); each test reads
the conclusions it checks. Thresholds are the issue's: best hour within ±1 h, sign and rough size of
hashtag and hook-style lifts, a reach drop found within 2 days of its start with at most one false
alarm per 90 days on seasonal data, and an engagement model that beats the median baseline in
time-ordered cross-validation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contentforge.analytics.drops import detect_reach_drops
from contentforge.analytics.frames import normalize, posts_frame
from contentforge.analytics.learn import AccountLearning, LearnConfig, learn_account, learn_and_store
from contentforge.analytics.simulator import PlantedEffects, SimulatedAccount, simulate_account
from contentforge.analytics.timing import choose_hours
from contentforge.db import make_engine, migrate
from contentforge.db.analytics import AnalyticsStore

END = datetime(2026, 6, 1, tzinfo=UTC)
DROP_START = (END - timedelta(days=30)).date()
FAST = LearnConfig(train_model=False)


def learned(sim: SimulatedAccount, config: LearnConfig = FAST) -> AccountLearning:
    return learn_account(
        sim.observations,
        sim.days,
        account=sim.account,
        platform=sim.platform,
        timezone=sim.timezone,
        config=config,
    )


@pytest.fixture(scope="module")
def accounts() -> dict[str, SimulatedAccount]:
    """Three 90-day accounts (two planted best hours, one in New York time) and one with a drop."""
    return {
        "evening": simulate_account("evening", days=90, end=END, seed=1, posts_per_day=2),
        "morning": simulate_account(
            "morning",
            days=90,
            end=END,
            seed=2,
            posts_per_day=2,
            timezone="America/New_York",
            effects=PlantedEffects(best_hour=9),
        ),
        "berlin": simulate_account(
            "berlin", days=90, end=END, seed=3, posts_per_day=2, timezone="Europe/Berlin"
        ),
        "dropped": simulate_account(
            "dropped", days=90, end=END, seed=4, effects=PlantedEffects(drop_start=DROP_START)
        ),
    }


@pytest.mark.parametrize("name", ["evening", "morning", "berlin"])
def test_best_posting_hour_is_recovered_within_one_hour_in_the_accounts_time_zone(
    accounts: dict[str, SimulatedAccount], name: str
) -> None:
    sim = accounts[name]
    timing = learned(sim).timing
    assert timing.enough and timing.best_hour is not None
    assert abs(timing.best_hour - sim.effects.best_hour) <= 1
    best = next(h for h in timing.hours if h.hour == timing.best_hour)
    assert best.lower > 1.0 and best.lower < best.lift < best.upper  # an interval, above typical
    night = next(h for h in timing.hours if h.hour == 3)  # never posted at: the prior, wide
    assert (
        night.n == 0
        and night.lift == pytest.approx(1.0)
        and night.upper - night.lower > best.upper - best.lower
    )


def test_planted_hashtag_and_hook_style_lifts_are_recovered_with_sign_and_rough_size(
    accounts: dict[str, SimulatedAccount],
) -> None:
    for sim in (accounts["evening"], accounts["morning"]):
        rankings = learned(sim).rankings
        tags = {w.key: w for w in rankings["hashtag"].ranked}
        styles = {w.key: w for w in rankings["hook_style"].ranked}
        assert rankings["hashtag"].ranked[0].key == "gymtok"
        assert 1.2 < tags["gymtok"].lift < 1.9 and tags["gymtok"].lower > 1.0
        assert 0.5 < tags["mondaymotivation"].lift < 0.9 and tags["mondaymotivation"].upper < 1.0
        assert rankings["hook_style"].ranked[0].key == "question"
        assert 1.1 < styles["question"].lift < 1.8 and styles["question"].lower > 1.0
        assert 0.55 < styles["teaser"].lift < 0.95 and styles["teaser"].upper < 1.0
        neutral = [w for k, w in tags.items() if k not in sim.effects.hashtag_lifts]
        assert all(0.75 < w.lift < 1.33 for w in neutral)


def test_the_injected_reach_drop_is_found_within_two_days_also_as_it_happens(
    accounts: dict[str, SimulatedAccount],
) -> None:
    sim = accounts["dropped"]
    drops = learned(sim).drops.drops
    assert [abs((d.starts_on - DROP_START).days) <= 2 for d in drops] == [True]
    assert drops[0].depth < 0.6
    series = pd.Series({d.day: d.reach for d in sim.days})
    for days_in in (1, 2):  # online: only the data up to one or two days after the drop began
        early = detect_reach_drops(series[series.index <= DROP_START + timedelta(days=days_in)]).drops
        assert [abs((d.starts_on - DROP_START).days) <= 2 for d in early] == [True]


def test_weekly_seasonality_and_viral_posts_raise_at_most_one_false_alarm_per_90_days() -> None:
    strong_week = PlantedEffects(weekday_lifts=(0.7, 0.8, 0.9, 1.0, 1.1, 1.5, 1.6), viral_probability=0.05)
    alarms = []
    for seed in range(6):
        sim = simulate_account("calm", days=90, end=END, seed=100 + seed, effects=strong_week)
        alarms.append(len(detect_reach_drops(pd.Series({d.day: d.reach for d in sim.days})).drops))
    assert max(alarms) <= 1 and sum(alarms) <= 2


def test_the_engagement_model_beats_the_median_in_time_ordered_cross_validation() -> None:
    sim = simulate_account("model", days=120, end=END, seed=7, posts_per_day=2)
    model = learned(sim, LearnConfig()).model
    assert model is not None and model.evaluation.usable, model.evaluation.reason
    ev = model.evaluation
    assert ev.mae is not None and ev.baseline_mae is not None and ev.mae < 0.9 * ev.baseline_mae
    assert ev.spearman is not None and ev.spearman > 0.3
    planned = normalize(posts_frame(sim.observations)).tail(5)
    predicted = model.predict(planned)
    assert predicted is not None and len(predicted) == 5 and (predicted > 0).all()


def test_too_little_data_concludes_nothing_and_says_so() -> None:
    sim = simulate_account("new", days=12, end=END, seed=9)
    result = learned(sim, LearnConfig())
    assert not result.timing.enough and result.timing.reason.startswith("default: only ")
    assert result.timing.best_hour is None
    assert choose_hours(result.timing, 3, rng=np.random.default_rng(0)) == []
    assert all(not r.ranked for r in result.rankings.values())
    assert result.rankings["hashtag"].untested  # listed with their counts, never ranked
    assert result.model is not None and not result.model.evaluation.usable
    assert "not used: only" in result.model.evaluation.reason and result.model.predict(result.frame) is None
    assert not result.drops.enough and result.drops.drops == []
    assert [w for w in result.weights() if w.kind == "hour_of_week"] == []


def test_thompson_sampling_prefers_good_hours_but_still_explores(
    accounts: dict[str, SimulatedAccount],
) -> None:
    timing = learned(accounts["evening"]).timing
    rng = np.random.default_rng(0)
    picks = [c.hour for _ in range(200) for c in choose_hours(timing, 2, rng=rng)]
    counts = pd.Series(picks).value_counts()
    assert counts.index[0] in (18, 19, 20)  # the best hours are drawn most
    assert len(counts) >= 5  # yet other hours are tried too
    chosen = choose_hours(timing, 3, rng=np.random.default_rng(1))
    assert len(chosen) == 3 and all("expected lift" in c.why and "interval" in c.why for c in chosen)


def test_learn_and_store_saves_weights_and_records_a_drop_once(
    accounts: dict[str, SimulatedAccount], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'learn.db'}"
    migrate(url)
    store = AnalyticsStore(make_engine(url))
    sim = accounts["dropped"]
    store.record(sim.observations)
    store.record_account_days(sim.days)
    now = datetime.combine(DROP_START + timedelta(days=3), datetime.min.time(), UTC)
    first = learn_and_store(store, "dropped", "instagram", now=now, config=FAST)
    assert first.reach_source == "account"
    [alert] = store.alerts("dropped")
    assert alert.starts_on == first.drops.drops[0].starts_on
    assert alert.simulated and alert.detail["series"] == "account"
    assert first.new_alerts == []  # a simulated alert is recorded, never sent
    again = learn_and_store(store, "dropped", "instagram", now=now, config=FAST)
    assert again.new_alerts == [] and len(store.alerts("dropped")) == 1
    assert store.weights("dropped", "instagram") == []  # simulated weights never steer a real persona
    kinds = {w.kind for w in store.weights("dropped", "instagram", simulated=True)}
    assert {"hour_of_week", "hashtag", "hook_style"} <= kinds
