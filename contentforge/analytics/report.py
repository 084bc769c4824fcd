"""A learn run's conclusions as Markdown: for the Prefect artifact and ``contentforge analytics report``."""

from __future__ import annotations

import base64

from contentforge.analytics import plots
from contentforge.analytics.learn import AccountLearning

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def best_times_lines(learning: AccountLearning, top: int = 5) -> list[str]:
    timing = learning.timing
    if not timing.enough:
        return [f"Posting times: {timing.reason}; the configured slots stay."]
    best = sorted(timing.hours_of_week, key=lambda h: -h.mean)[:top]
    lines = [
        f"Posting times ({timing.reason}):",
        "",
        "| when (local) | expected lift | 90% interval | posts |",
    ]
    lines.append("|---|---|---|---|")
    lines += [
        f"| {DAYS[h.hour // 24]} {h.hour % 24:02d}:00 | {h.lift:.2f} | {h.lower:.2f}-{h.upper:.2f} | {h.n} |"
        for h in best
    ]
    return lines


def markdown(learning: AccountLearning, *, images: bool = True) -> str:
    label = " (SIMULATED data)" if learning.simulated else ""
    lines = [f"# {learning.account} on {learning.platform}{label}", ""]
    lines += [f"{len(learning.frame)} posts with normalized engagement.", ""]
    lines += best_times_lines(learning)
    lines += ["", "## What works (lift vs the account's other posts, 90% interval)", ""]
    for kind, ranking in learning.rankings.items():
        shown = ", ".join(
            f"{w.key} {w.lift:.2f} ({w.lower:.2f}-{w.upper:.2f}, n={w.n_posts})" for w in ranking.ranked[:5]
        )
        untested = (
            f"; untested: {', '.join(f'{k} (n={n})' for k, n in list(ranking.untested.items())[:5])}"
            if ranking.untested
            else ""
        )
        lines.append(f"- **{kind}**: {shown or 'nothing with enough posts'}{untested}")
    lines += ["", "## Reach drops", ""]
    if not learning.drops.enough:
        lines.append(f"Not checked: {learning.drops.reason}.")
    elif not learning.drops.drops:
        lines.append(f"None found ({learning.drops.reason}, {learning.reach_source} reach).")
    else:
        lines += [
            f"- from {d.starts_on} (detected {d.detected_on}): reach at {d.depth:.0%} of baseline"
            for d in learning.drops.drops
        ]
    if learning.model is not None:
        lines += ["", "## Engagement model", "", learning.model.evaluation.reason]
    if images:
        pictures = [
            plots.reach_over_time(learning),
            plots.hour_of_week_heatmap(learning),
            plots.rankings(learning),
        ]
        scatter = plots.predicted_vs_actual(learning)
        pictures += [scatter] if scatter is not None else []
        lines += [""] + [f"![plot](data:image/png;base64,{base64.b64encode(p).decode()})" for p in pictures]
    return "\n".join(lines)
