"""Dashboard plots as PNG bytes (matplotlib, no display): what the ``learn`` artifacts and the
analytics page show. Every simulated account's plot says SIMULATED in its title."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only: never a window, never a display server

import matplotlib.pyplot as plt
import numpy as np

from contentforge.analytics.learn import AccountLearning

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _title(learning: AccountLearning, what: str) -> str:
    label = " [SIMULATED]" if learning.simulated else ""
    return f"{learning.account} on {learning.platform}: {what}{label}"


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def reach_over_time(learning: AccountLearning) -> bytes:
    """Daily reach without its weekly pattern, with every detected drop marked."""
    figure, axis = plt.subplots(figsize=(8, 3))
    series = learning.drops.deseasonalized
    if len(series):
        axis.plot(
            series.index,
            np.expm1(series.to_numpy()),
            color="#336",
            linewidth=1.2,
            label="reach (deseasonalized)",
        )
    for drop in learning.drops.drops:
        axis.axvline(drop.starts_on, color="#c33", linestyle="--", linewidth=1)  # type: ignore[arg-type]
        top = axis.get_ylim()[1]
        axis.annotate(f"drop {drop.depth:.0%}", (drop.starts_on, top), color="#c33", fontsize=8, va="top")
    axis.set_title(_title(learning, f"reach ({learning.reach_source}), drops marked"), fontsize=10)
    axis.set_ylabel("reach")
    return _png(figure)


def hour_of_week_heatmap(learning: AccountLearning) -> bytes:
    """Expected lift by weekday and local hour (empirical Bayes), 1.0 = a typical post."""
    grid = np.ones((7, 24))
    for cell in learning.timing.hours_of_week:
        grid[cell.hour // 24, cell.hour % 24] = cell.lift
    figure, axis = plt.subplots(figsize=(8, 3))
    image = axis.imshow(grid, aspect="auto", cmap="RdYlGn", vmin=0.5, vmax=1.5)
    axis.set_yticks(range(7), DAYS)
    axis.set_xticks(range(0, 24, 3), [f"{h:02d}" for h in range(0, 24, 3)])
    figure.colorbar(image, ax=axis, label="expected lift")
    what = "best times" if learning.timing.enough else learning.timing.reason
    axis.set_title(_title(learning, what), fontsize=10)
    return _png(figure)


def rankings(
    learning: AccountLearning, kinds: tuple[str, ...] = ("hashtag", "hook_style", "template_category")
) -> bytes:
    """Lifts with their 90% intervals, per kind; untested values are not drawn."""
    figure, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.2))
    for axis, kind in zip(np.atleast_1d(axes), kinds, strict=True):
        ranked = learning.rankings[kind].ranked[:10]
        labels = [w.key[:18] for w in ranked]
        lifts = np.array([w.lift for w in ranked])
        errors = np.array([[w.lift - w.lower for w in ranked], [w.upper - w.lift for w in ranked]])
        axis.barh(labels[::-1], lifts[::-1], xerr=errors[:, ::-1] if len(ranked) else None, color="#69c")
        axis.axvline(1.0, color="#333", linewidth=0.8)
        axis.set_title(kind.replace("_", " "), fontsize=9)
    figure.suptitle(_title(learning, "what works (lift, 90% interval)"), fontsize=10)
    return _png(figure)


def predicted_vs_actual(learning: AccountLearning) -> bytes | None:
    """Held-out predictions of the engagement model against what happened (None without a model)."""
    if learning.model is None or not learning.model.evaluation.held_out:
        return None
    predicted, actual = zip(*learning.model.evaluation.held_out, strict=True)
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.scatter(predicted, actual, s=8, alpha=0.6)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.plot([0.1, 10], [0.1, 10], color="#999", linewidth=0.8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    axis.set_title(_title(learning, "predicted vs actual"), fontsize=9)
    return _png(figure)
